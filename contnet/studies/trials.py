"""A tuning arm on Optuna, used directly: one study per arm in a shared storage, trials run in this process.

Each trial is one run of the study runner (runner.run_in_process) whose evaluations are reported to Optuna as
they happen (`on_eval`: the validation loss at each `trainer.eval_every`), so the pruner can stop a hopeless
trial; the run then ends with status "pruned" (its checkpoint and records as after a stop).

The budget is counted in full-run equivalents: the steps trained by the arm's trials / the steps of a full run.
A complete trial costs one; a pruned or diverged one the steps it ran; a failed one nothing (a rerun asks for a
replacement); a running one reserves a full run, so workers sharing the study never ask for more than the
budget.  A trial is asked only while a full run still fits: the spent budget is ≤ `tune.trials`, and without
pruning it is exactly `tune.trials` trials.
"""
from __future__ import annotations

import functools
import math
import time
from pathlib import Path

from contnet.studies import runner, space

JOURNAL = "journal.log"            # Optuna's journal file in the study folder: every arm's study, every worker


@functools.cache
def optuna():
    import optuna as _optuna
    _optuna.logging.set_verbosity(_optuna.logging.WARNING)
    return _optuna


def open_storage(plan: dict, out: Path):
    """The plan's storage: an RDB URL (`--storage`), or Optuna's journal file in the study folder."""
    op = optuna()
    if plan.get("storage"):
        return op.storages.RDBStorage(plan["storage"])
    from optuna.storages.journal import JournalFileBackend
    return op.storages.JournalStorage(JournalFileBackend(str(Path(out) / JOURNAL)))


PRUNERS = {"none": "NopPruner", "median": "MedianPruner", "successive_halving": "SuccessiveHalvingPruner",
           "hyperband": "HyperbandPruner"}


def make_pruner(spec: dict, full_steps: int | None = None):
    """{name: none|median|successive_halving|hyperband, <the Optuna pruner's arguments>}; Hyperband's
    max_resource is a full run's steps unless given."""
    spec = dict(spec or {"name": "none"})
    name = spec.pop("name")
    if name == "hyperband" and full_steps and "max_resource" not in spec:
        spec["max_resource"] = full_steps
    return getattr(optuna().pruners, PRUNERS[name])(**spec)


def make_sampler(plan: dict, n_done: int, worker: int):
    """Seeded TPE.  A fresh study with one worker draws the same trials every time; a resumed one (n_done trials
    in it) or a second worker gets another seed, so it does not replay the first suggestions."""
    s = plan["sampler"]
    seed = int(s.get("seed", 0)) + n_done + 100_003 * worker
    return optuna().samplers.TPESampler(seed=seed, n_startup_trials=int(s.get("n_startup_trials", 8)),
                                        constant_liar=plan.get("workers", 1) > 1)


def load_study(storage, arm: str, plan: dict | None = None, worker: int = 0):
    op = optuna()
    study = op.create_study(study_name=arm, storage=storage, direction="minimize", load_if_exists=True,
                            pruner=make_pruner(plan["pruner"], plan.get("full_steps")) if plan else None)
    if plan is not None:
        study.sampler = make_sampler(plan, len(study.get_trials(deepcopy=False)), worker)
    return study


def cost(trial, full_steps: int | None) -> float:
    """A trial's share of the budget in full-run equivalents (see the module's docstring)."""
    st = optuna().trial.TrialState
    if trial.state in (st.RUNNING, st.WAITING):
        return 1.0
    if trial.state == st.FAIL:
        return 0.0
    steps = trial.user_attrs.get("steps")
    if not full_steps or steps is None:
        return 1.0
    return min(1.0, steps / full_steps)


def spent(trials, full_steps: int | None) -> float:
    return sum(cost(t, full_steps) for t in trials)


def fail_stale(storage, arms) -> int:
    """Trials left RUNNING by a process that is gone (a kill, a crash) become FAIL: they would hold budget
    forever.  Called by the one process that starts the workers, before any of them runs."""
    op, n = optuna(), 0
    for arm in arms:
        for t in load_study(storage, arm).get_trials(deepcopy=False, states=(op.trial.TrialState.RUNNING,)):
            storage.set_trial_state_values(t._trial_id, op.trial.TrialState.FAIL)
            n += 1
    return n


def tune_arm(plan: dict, out: Path, storage, arm: str, worker: int = 0) -> int:
    """Ask and run this arm's trials while its budget has room for a full run; returns how many ran here."""
    study, ran = load_study(storage, arm, plan, worker), 0
    dists = space.parse(plan["arms"][arm].get("space"))
    budget, full = plan["trials"], plan.get("full_steps")
    while spent(study.get_trials(deepcopy=False), full) + 1 <= budget + 1e-9:
        trial = study.ask(dists)
        if over_budget(study, trial, budget, full):
            continue
        run_trial(plan, out, study, trial, arm)
        ran += 1
    return ran


def over_budget(study, trial, budget: float, full: int | None) -> bool:
    """Two workers that asked at the same moment may both have seen room for one run: the later trial
    (higher number) yields, marked FAIL with a note (it trained nothing and costs nothing)."""
    before = [t for t in study.get_trials(deepcopy=False) if t.number <= trial.number]
    if spent(before, full) <= budget + 1e-9:
        return False
    study.tell(trial, state=optuna().trial.TrialState.FAIL)
    study.set_user_attr(f"skipped_{trial.number}", "over budget: another worker took the last run")
    return True


def arm_overrides(plan: dict, arm: str, params: dict) -> list[str]:
    """A run of `arm` at `params` (its trials, its final runs, the check of its space): the preset, the arm's
    overrides, the command's, the study's own, then the values."""
    return [f"experiment={plan['experiment']}", *plan["arms"][arm].get("overrides", []), *plan["overrides"],
            *plan.get("run_overrides", []), *(space.override(k, v) for k, v in sorted(params.items()))]


def trial_run(plan: dict, arm: str, trial) -> runner.Run:
    return runner.Run(f"tune/{arm}/trial{trial.number:03d}", arm_overrides(plan, arm, trial.params),
                      seed=plan["tune_seed"], arm=arm,
                      extra={"kind": "trial", "trial": trial.number, "params": dict(trial.params)})


def reporter(trial):
    """fit()'s on_eval: each evaluation's val/loss goes to the pruner, which may stop the trial."""
    def on_eval(record: dict) -> bool:
        value = record.get("val/loss")
        if value is None or not math.isfinite(value):
            return False
        trial.report(float(value), int(record["step"]))
        return trial.should_prune()
    return on_eval


def run_trial(plan: dict, out: Path, study, trial, arm: str) -> None:
    """One trial as one in-process run; its outcome told to the study (see `outcome`)."""
    run = trial_run(plan, arm, trial)
    st = optuna().trial.TrialState
    t0 = time.monotonic()
    trial.set_user_attr("run", run.dir)
    try:
        summary = runner.run_in_process(run, out, quiet=True, on_eval=reporter(trial))
    except BaseException:
        study.tell(trial, state=st.FAIL)             # a crash or a stop: not a result, a rerun replaces it
        raise
    trial.set_user_attr("steps", int(summary.get("steps") or 0))         # what the budget counts (see cost)
    trial.set_user_attr("status", summary.get("status"))
    trial.set_user_attr("seconds", round(time.monotonic() - t0, 3))
    state, value = outcome(summary)
    study.tell(trial, value, state=state)
    said = f"val/loss {value:.5g}" if value is not None else ""
    print(f"[tune] {arm} trial {trial.number}: {summary.get('status')} {said} ({summary.get('steps')} steps, "
          f"{time.monotonic() - t0:.1f} s)", flush=True)
    runner.stop_if_interrupted(summary)


def outcome(summary: dict):
    """(state, value) for Optuna: completed -> its final val/loss; diverged -> +inf (the worst point, never its
    last finite loss); pruned -> PRUNED; anything else -> FAIL."""
    st = optuna().trial.TrialState
    status = summary.get("status")
    if status == "completed":
        v = (summary.get("final") or {}).get("val/loss")
        return st.COMPLETE, float(v) if v is not None and math.isfinite(v) else math.inf
    if status == "diverged":
        return st.COMPLETE, math.inf
    if status == "pruned":
        return st.PRUNED, None
    return st.FAIL, None


def best(trials) -> object | None:
    """The complete trial with the lowest finite value (None when no trial completed with one)."""
    done = [t for t in trials if t.state == optuna().trial.TrialState.COMPLETE and t.value is not None
            and math.isfinite(t.value)]
    return min(done, key=lambda t: (t.value, t.number)) if done else None


def settled(storage, arms) -> bool:
    """No trial of any arm is still running (the workers' barrier before the final runs)."""
    st = optuna().trial.TrialState
    return not any(load_study(storage, a).get_trials(deepcopy=False, states=(st.RUNNING, st.WAITING)) for a in arms)
