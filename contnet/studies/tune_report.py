"""What a tuning study leaves: report.md (tuned values, every trial — complete, pruned, diverged —, the budget
spent in full-run equivalents, then `contnet report` over the final seeds: mean ± std and time-to-target) and
the artifact (runs.jsonl: one row per trial run and per final run; meta.json), both from the study's storage
and its run folders, so a rerun that does no work writes the same report."""
from __future__ import annotations

import math
from pathlib import Path

from contnet.studies import runner, trials


def fmt(v) -> str:
    if isinstance(v, float):
        return "inf" if v == math.inf else f"{v:.4g}"
    return str(v)


def loads(x) -> str:
    return " ".join(f"{v:.2f}" for v in x) if isinstance(x, list) and x else "?"


def label(t) -> str:
    """A trial's outcome in words: complete, diverged (complete at +inf), pruned, failed."""
    state = t.state.name.lower()
    if state == "complete" and (t.value is None or not math.isfinite(t.value)):
        return "diverged"
    return state


def arm_summary(plan: dict, storage, arm: str) -> dict:
    ts = [t for t in trials.load_study(storage, arm).get_trials(deepcopy=False)
          if "run" in t.user_attrs]            # not the over-budget asks that ran nothing (trials.over_budget)
    counts = {k: sum(label(t) == k for t in ts) for k in ("complete", "pruned", "diverged", "fail")}
    top = trials.best(ts)
    return {"arm": arm, "best": dict(top.params) if top else {}, "best_val": top.value if top else None,
            "best_trial": top.number if top else None, "counts": counts, "trials": ts,
            "spent": round(trials.spent(ts, plan.get("full_steps")), 3), "budget": plan["trials"],
            "space": plan["arms"][arm].get("space", {})}


def tuned_section(experiment: str, plan: dict, arms: list[dict], wall: dict) -> str:
    rows = ["| arm | tuned values | best val/loss | trials: complete / pruned / diverged / failed | budget spent "
            "(full runs) | search space |", "|---|---|---|---|---|---|"]
    for a in arms:
        values = ", ".join(f"{k}={fmt(v)}" for k, v in sorted(a["best"].items())) or "(none completed)"
        c = a["counts"]
        space = "; ".join(f"{k}: {v}" for k, v in a["space"].items())
        best = f"{a['best_val']:.5g} (trial {a['best_trial']})" if a["best_val"] is not None else "–"
        rows.append(f"| {a['arm']} | {values} | {best} | {c['complete']} / {c['pruned']} / {c['diverged']} / "
                    f"{c['fail']} | {a['spent']:g} of {a['budget']:g} | {space} |")
    pruner = dict(plan["pruner"])
    name = pruner.pop("name")
    return "\n".join([
        f"# Tuned comparison: `{experiment}`", "",
        f"Protocol (docs/tuning.md): per arm an Optuna study (TPE, sampler seed {plan['sampler'].get('seed', 0)}; "
        f"pruner {name}{' ' + str(pruner) if pruner else ''}) minimises the final **validation** loss at training "
        f"seed {plan['tune_seed']}, with a budget of {plan['trials']:g} full-run equivalents "
        f"({plan.get('full_steps') or '?'} steps each: a pruned or diverged trial costs the steps it ran); then "
        f"{len(plan['seeds'])} runs (seeds {', '.join(map(str, plan['seeds']))}) at the arm's best values, scored "
        "on the held-out **test** split.", "", *rows, "",
        f"Wall time: {wall.get('wall_s_all', wall.get('wall_s', 0)):.0f} s in all, over {wall.get('invocations', 1)} "
        f"invocation(s) of the command (this one: {wall.get('wall_s', 0):.1f} s, {plan.get('workers', 1)} worker(s); "
        f"a rerun does only what is missing); load average at the start {loads(wall.get('load_start'))}, at the end "
        f"{loads(wall.get('load_end'))}.",
        "", ""])


def trials_section(arms: list[dict]) -> str:
    lines = ["## Trials", "", "| arm | trial | outcome | val/loss | steps | values |", "|---|---|---|---|---|---|"]
    for a in arms:
        for t in a["trials"]:
            value = fmt(t.value) if t.value is not None else \
                (fmt(t.intermediate_values[max(t.intermediate_values)]) + " (last reported)"
                 if t.intermediate_values else "–")
            values = ", ".join(f"{k}={fmt(v)}" for k, v in sorted(t.params.items()))
            lines.append(f"| {a['arm']} | {t.number} | {label(t)} | {value} | {t.user_attrs.get('steps', '–')} | "
                         f"{values} |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, plan: dict, arms: list[dict], wall: dict) -> Path:
    """report.md: the tuned table, `contnet report` over the final runs (when there are any), every trial."""
    from contnet.report import make_report
    from contnet.report.stats import parse_target
    body = "\n(tuning only: no final runs)\n"
    if (out / "final").is_dir():
        targets = [parse_target(f"val/loss={plan['target']}")] if plan.get("target") is not None else []
        make_report([out / "final"], out_dir=out, targets=targets, metrics=["val/loss", "test/loss"],
                    ignore=["seed"], quiet=True, require_logged=False)
        body = (out / "report.md").read_text(encoding="utf-8")
        if body.startswith("# "):                     # its title becomes our section's
            body = body.split("\n", 1)[1]
        body = "## Final runs at the tuned values\n" + body
    path = out / "report.md"
    text = tuned_section(plan["experiment"], plan, arms, wall) + body + "\n" + trials_section(arms)
    path.write_text(text, encoding="utf-8")
    return path


def study_rows(plan: dict, out: Path, arms: list[dict], finals: list) -> list[dict]:
    """One artifact row per trial that ran (its outcome and values in `extra`) and per final run."""
    runs = []
    for a in arms:
        for t in a["trials"]:
            if "run" not in t.user_attrs:
                continue
            r = trials.trial_run(plan, a["arm"], t)
            value = t.value if t.value is not None and math.isfinite(t.value) else None     # JSON has no inf
            runs.append(runner.Run(t.user_attrs["run"], r.overrides, r.seed, r.arm,
                                   extra={**r.extra, "outcome": label(t), "value": value}))
    return runner.rows(runs + list(finals), out)
