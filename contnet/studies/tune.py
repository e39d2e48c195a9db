"""Tuned comparisons: every optimizer ("arm") at its own tuned hyper-parameters (docs/tuning.md).

    contnet tune experiment=tune_digits_ae                              # make compare-digits-ae
    contnet tune experiment=tune_digits_ae --trials 4 --seeds 0,1 -- trainer.max_steps=100
    contnet tune experiment=tune_digits_ae --workers 2                  # two processes share each study

The preset (conf/experiment/tune_*.yaml) composes a normal training config plus a `tune:` table: the budget
(`trials`, in full-run equivalents per arm), the tuning seed, the final seeds, the sampler and the pruner, and
per arm its overrides and its search space (sweep expressions, contnet/studies/space.py).  Per arm an Optuna
study (Optuna's journal file <out>/journal.log, or `--storage URL`) asks for trials; each trial is a run in this
process (contnet/studies/trials.py) that reports its validation loss at every evaluation, so the pruner can stop
it.  Then one run per final seed at the arm's best values (<out>/final/<arm>/seed<k>), and <out>/report.md with
runs.jsonl + meta.json (contnet/studies/artifact.py).  Rerunning the command does only what is missing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from contnet.studies import artifact, runner, trials, tune_report, workers

LAUNCHERS = ("processes", "slurm", "submitit_local")


def plan_from(cfg, trials_: float | None = None, seeds=None) -> dict:
    """The `tune:` table of a composed preset as plain data (arm order kept; `arm: null` drops an arm)."""
    from omegaconf import OmegaConf

    from contnet.registry import ConfigError
    if "tune" not in cfg:
        raise ConfigError("this preset has no `tune:` table; use a conf/experiment/tune_*.yaml preset")
    t = OmegaConf.to_container(cfg.tune, resolve=True)
    return {"trials": trials_ if trials_ is not None else t["trials"], "tune_seed": int(t["tune_seed"]),
            "seeds": [int(s) for s in (seeds if seeds is not None else t["seeds"])], "target": t.get("target"),
            "sampler": t.get("sampler") or {"seed": 0, "n_startup_trials": 8},
            "pruner": pruner_spec(t, t.get("pruner")), "full_steps": cfg.trainer.get("max_steps"),
            "arms": {name: arm for name, arm in t["arms"].items() if arm is not None}}


def pruner_spec(table: dict, name: str | None) -> dict:
    """{name, <its arguments from tune.pruners.<name>>}; no pruner named: none."""
    name = name or "none"
    return {"name": name, **((table.get("pruners") or {}).get(name) or {})}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="contnet tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Overrides after the preset (or after --) apply to every run.")
    p.add_argument("experiment", help="experiment=<tune preset>, e.g. experiment=tune_digits_ae")
    p.add_argument("overrides", nargs="*", help="overrides for every run, e.g. trainer.max_steps=100")
    p.add_argument("--out", type=Path, default=None, help="study folder (default: outputs/tune/<preset>)")
    p.add_argument("--trials", type=int, default=None,
                   help="budget per arm in full-run equivalents (default: the preset's tune.trials)")
    p.add_argument("--seeds", default=None, help="final seeds, e.g. 0,1,2 (default: the preset's tune.seeds)")
    p.add_argument("--arms", default=None, help="a subset of the preset's arms, e.g. adam,cadam")
    p.add_argument("--workers", type=int, default=1, help="processes sharing each study (default 1)")
    p.add_argument("--launcher", choices=LAUNCHERS, default="processes",
                   help="where workers run: local processes, Slurm array tasks, or submitit's local executor")
    p.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="a submitit/Slurm parameter for --launcher slurm, e.g. partition=cpu, timeout_min=120")
    p.add_argument("--pruner", default=None, help="none|median|successive_halving|hyperband (default: the preset's)")
    p.add_argument("--storage", default=None, help="an RDB URL for the studies (default: <out>/journal.log)")
    p.add_argument("--tune-only", action="store_true", help="stop after tuning (no final runs)")
    return p


def parse_seeds(text: str) -> list[int]:
    from contnet.registry import ConfigError
    for s in text.split(","):
        if not (s.strip().isascii() and s.strip().isdigit()):
            raise ConfigError(f"--seeds {text}: {s.strip()!r} is not a seed (an integer ≥ 0); give comma-separated "
                              "seeds, e.g. --seeds 0,1,2")
    return [int(s) for s in text.split(",")]


def check_preset(experiment: str) -> None:
    from contnet.cli.main import config_groups
    from contnet.registry import ConfigError
    names = config_groups()["experiment"]
    presets = [n for n in names if n.startswith("tune_")]
    if experiment not in presets:
        what = "has no `tune:` table (not a tuning preset)" if experiment in names else "no such preset"
        raise ConfigError(f"experiment={experiment}: {what}; choose one of: {', '.join(presets)} "
                          "(conf/experiment/tune_*.yaml)")


def check_args(args) -> None:
    from contnet.cli.checks import sweep_overrides
    from contnet.registry import ConfigError
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: give 1 or more worker processes, e.g. --workers 2")
    if args.trials is not None and args.trials < 1:
        raise ConfigError(f"--trials {args.trials}: give a budget of 1 or more full runs per arm")
    seeded = [o for o in args.overrides if o.split("=", 1)[0].lstrip("+~") == "seed"]
    if seeded:
        raise ConfigError(f"{seeded[0]}: the study sets the seeds; use --seeds for the final runs "
                          "(the tuning runs use the preset's tune.tune_seed)")
    swept = sweep_overrides(args.overrides)
    if swept:
        raise ConfigError(f"{swept[0]}: a sweep; every run of a study takes one value per key (the preset's "
                          "tune.arms.<arm>.space says what is tuned); give one value, or quote a string with commas")
    bad = [s for s in args.slurm if "=" not in s]
    if bad:
        raise ConfigError(f"--slurm {bad[0]}: give KEY=VALUE, e.g. --slurm partition=cpu")
    if args.launcher != "processes":
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise ConfigError(f"--launcher {args.launcher} needs submitit: pip install -e '.[slurm]'") from None


def select_arms(plan: dict, text: str | None) -> None:
    from contnet.registry import ConfigError
    if not text:
        return
    unknown = [a for a in text.split(",") if a not in plan["arms"]]
    if unknown:
        raise ConfigError(f"--arms {','.join(unknown)}: not in the preset; its arms are {', '.join(plan['arms'])}")
    plan["arms"] = {a: plan["arms"][a] for a in text.split(",")}


def check_arms(plan: dict) -> None:
    """Every arm's search space parses and its runs compose (at the space's low ends) and validate, before any
    file is written: a bad expression or key is one line naming the arm."""
    from contnet.registry import ConfigError
    from contnet.studies import space
    for arm, spec in plan["arms"].items():
        try:
            dists = space.parse(spec.get("space"))
            low = {k: d.choices[0] if hasattr(d, "choices") else d.low for k, d in dists.items()}
            checked_config(trials.arm_overrides(plan, arm, low))
        except ConfigError as e:
            raise ConfigError(f"tune.arms.{arm}: {e}") from None
    if not plan["arms"] or not plan["seeds"]:
        raise ConfigError("the study needs at least one arm and one final seed (--arms, --seeds)")


def checked_config(overrides: list[str]):
    """The config a run of the study composes from `overrides` (runner.compose_run: the study's runs share its
    composition), checked as `contnet train` checks it; what `contnet train` would refuse raises its one line
    (cli.checks.check_overrides, called only then: it composes once more)."""
    from contnet.cli.checks import check_group_choices, check_overrides, check_task_files
    from contnet.registry import ConfigError
    from contnet.validation import validate
    msg = check_group_choices(overrides)
    if msg:
        raise ConfigError(msg)
    if any(o.startswith(("+", "~")) for o in overrides):      # adds and deletes: the checks' own rules for them
        check_overrides(overrides, output_dir=False)
    try:
        cfg = runner.compose_run(overrides)
        validate(cfg)
        check_task_files(cfg.task)
        return cfg
    except ConfigError:
        raise
    except Exception:                      # noqa: BLE001 - Hydra's or OmegaConf's: the checks say it in one line
        check_overrides(overrides, output_dir=False)
        raise


def check_pruner(plan: dict) -> None:
    from contnet.registry import ConfigError
    spec = dict(plan["pruner"])
    if spec.get("name") not in trials.PRUNERS:
        raise ConfigError(f"pruner {spec.get('name')!r}: choose one of {', '.join(trials.PRUNERS)} "
                          "(--pruner or tune.pruner)")
    try:
        trials.make_pruner(spec, plan.get("full_steps"))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"tune.pruners.{spec.pop('name')} {spec}: {' '.join(str(e).split())}; see Optuna's "
                          f"{trials.PRUNERS[plan['pruner']['name']]} for its arguments") from None


def checked_plan(args) -> dict:
    """The study's plan, every input checked first (ConfigError: one line, nothing written)."""
    import os

    from omegaconf import OmegaConf

    experiment = args.experiment.split("=", 1)[-1]
    check_preset(experiment)
    check_args(args)
    cfg = checked_config([f"experiment={experiment}", *args.overrides])
    plan = plan_from(cfg, args.trials, parse_seeds(args.seeds) if args.seeds else None)
    if args.pruner:
        plan["pruner"] = pruner_spec(OmegaConf.to_container(cfg.tune, resolve=True), args.pruner)
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    plan.update(experiment=experiment, overrides=list(args.overrides), workers=args.workers,
                storage=args.storage, tune_only=args.tune_only, threads=threads,
                run_overrides=["trainer.plot=false"]           # the report draws the curves
                + ([f"trainer.threads={threads}"] if cfg.trainer.get("threads") is None else []))
    select_arms(plan, args.arms)
    check_pruner(plan)
    check_arms(plan)
    return plan


def launch(plan: dict, out: Path, args, forked: list) -> None:
    if args.launcher == "processes":
        if plan["workers"] == 1:
            workers.work(out)
        else:
            workers.run_local(out, plan["workers"], plan["threads"], forked)
        return
    params = dict(s.split("=", 1) for s in args.slurm)
    workers.run_submitit(out, plan["workers"], "slurm" if args.launcher == "slurm" else "local", params)


def wall_times(out: Path, wall_s: float) -> dict:
    """This invocation's wall time and the sum over every invocation that worked on the folder."""
    try:
        before = artifact.read_meta(out)
    except (OSError, ValueError):
        before = {}
    return {"wall_s": wall_s, "invocations": int(before.get("invocations", 0)) + 1,
            "wall_s_all": round(float(before.get("wall_s_all", 0.0)) + wall_s, 1)}


def finish(plan: dict, out: Path, command: str, env: dict, t0: float) -> Path:
    """report.md, runs.jsonl and meta.json from the studies and the run folders."""
    storage = trials.open_storage(plan, out)
    arms = [tune_report.arm_summary(plan, storage, a) for a in plan["arms"]]
    finals = [] if plan["tune_only"] else workers.final_runs(plan, out, storage)
    wall = wall_times(out, time.monotonic() - t0)
    tuned = {a["arm"]: {"values": a["best"], "best_val": a["best_val"], "trial": a["best_trial"],
                        "counts": a["counts"], "spent_full_runs": a["spent"]} for a in arms}
    artifact.write(out, tune_report.study_rows(plan, out, arms, finals), command, env, wall["wall_s"],
                   invocations=wall["invocations"], wall_s_all=wall["wall_s_all"], workers=plan["workers"],
                   budget_full_runs=plan["trials"], full_steps=plan["full_steps"], pruner=plan["pruner"],
                   sampler=plan["sampler"], tuned=tuned)
    meta = artifact.read_meta(out)
    for a in arms:
        print(f"[tune] {a['arm']}: best val/loss {tune_report.fmt(a['best_val'])} at "
              + ", ".join(f"{k}={tune_report.fmt(v)}" for k, v in sorted(a["best"].items()))
              + f"; {a['spent']:g} of {a['budget']:g} full runs spent", flush=True)
    return tune_report.write_report(out, plan, arms, {**meta, **wall})


def shown(argv: list[str]) -> str:
    """The command line for meta.json, an absolute path named by its role (no machine path in an artifact)."""
    import re
    return " ".join(re.sub(r"(^|=)/\S*", r"\1<path>", a) for a in argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_intermixed_args(argv)
    forked = workers.prestart(args.workers) if args.launcher == "processes" else []
    try:
        return study(args, argv, forked)
    finally:
        for f in forked:
            f.cancel()                   # one never started (a bad input) is killed: it has written nothing
        import gc
        gc.freeze()   # the study is written: the interpreter's collections at exit (~1.4 s here) skip its objects


def study(args, argv: list[str], forked: list) -> int:
    from contnet.engine.io import atomic_write_json
    from contnet.registry import ConfigError
    try:
        plan = checked_plan(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or Path("outputs") / "tune" / plan["experiment"]
    out.mkdir(parents=True, exist_ok=True)
    env, t0 = artifact.environment(), time.monotonic()
    atomic_write_json(out / workers.PLAN, plan)
    stale = trials.fail_stale(trials.open_storage(plan, out), plan["arms"])
    if stale:
        print(f"[tune] {stale} trial(s) left running by a stopped invocation marked failed", flush=True)
    import gc
    gc.freeze()       # what the imports and checks made leaves the collector's view: its full passes in every trial
    try:              # no longer walk torch's, Hydra's and Optuna's objects
        launch(plan, out, args, forked)
    except RuntimeError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    path = finish(plan, out, "contnet tune " + shown(argv), env, t0)
    print(f"[tune] wrote {path} in {time.monotonic() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    from contnet.cli.main import run_command
    sys.exit(run_command("tune", main))
