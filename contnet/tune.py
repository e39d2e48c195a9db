"""Tuned comparisons: every optimizer ("arm") at its own tuned hyper-parameters (docs/tuning.md).

    python -m contnet.tune experiment=tune_digits_ae                   # make compare-digits-ae
    python -m contnet.tune experiment=tune_digits_ae --trials 4 --seeds 0,1 -- trainer.max_steps=100
    python -m contnet.tune experiment=tune_digits_ae --out outputs/tune/x --report-only

The preset (conf/experiment/tune_*.yaml) composes a normal training config plus a `tune:` table: the
trial budget, the tuning seed, the final seeds and, per arm, its overrides and its search space (Optuna
sweep expressions).  Per arm the driver runs

1. tuning: `contnet train -m experiment=<preset> hydra/sweeper=tuned <arm overrides> <space>`: Hydra's
   Optuna sweeper (seeded TPE) minimises the final VALIDATION loss over `tune.trials` runs.  The study lives
   in <out>/tune/<arm>/optuna.db: a rerun asks only for the trials still missing (resumable); a resumed
   study's sampler is seeded with seed + trials already done, so it does not replay the first suggestions;
2. final runs: one run per seed of `tune.seeds` at the arm's best values (basic sweeper); a rerun skips
   the seeds whose summary.json says completed or diverged (a rerun would diverge again);

then `contnet report` over the final runs (held-out TEST loss mean ± std, time-to-target in steps and
seconds, curves) under a table of the tuned values and budgets: <out>/report.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from contnet.engine.run import read_summary

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")   # optuna 2.10's storage on SQLAlchemy 1.4


def compose_preset(experiment: str, overrides: Sequence[str] = ()):
    from contnet.conf import compose
    return compose([f"experiment={experiment}", *overrides], hydra_config=True)


def plan_from(cfg, trials: int | None = None, seeds: Sequence[int] | None = None) -> dict:
    """The `tune:` table of a composed preset as plain data (arm order kept)."""
    from omegaconf import OmegaConf

    from contnet.registry import ConfigError
    if "tune" not in cfg:
        raise ConfigError("this preset has no `tune:` table; use a conf/experiment/tune_*.yaml preset")
    t = OmegaConf.to_container(cfg.tune, resolve=True)
    return {"trials": int(trials if trials is not None else t["trials"]), "tune_seed": int(t["tune_seed"]),
            "seeds": [int(s) for s in (seeds if seeds is not None else t["seeds"])],
            "target": t.get("target"), "sampler_seed": int(cfg.hydra.sweeper.sampler.seed)
            if "hydra" in cfg else 0,
            "arms": {name: arm for name, arm in t["arms"].items() if arm is not None}}   # null drops an arm


def train_cmd(experiment: str, args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "contnet.cli.main", "train", "-m", f"experiment={experiment}",
            "hydra.callbacks.report.enabled=false", *args]


EXIT_DIVERGED = 3        # `contnet train -m` when a job diverged: a legitimate outcome (a too-large lr)


def call(cmd: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        rc = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc == EXIT_DIVERGED:
        print(f"[tune] some runs diverged (trials score +inf; seeds show in the report); see {log}", flush=True)
    elif rc != 0:
        raise RuntimeError(f"`{' '.join(cmd[3:6])} …` exited with code {rc}; see {log}")


def study_trials(db: Path, name: str) -> list:
    if not db.is_file():
        return []
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=f"sqlite:///{db}").get_trials(deepcopy=False)
    except KeyError:                      # the file exists but the study was never created
        return []


def finished(trials: list) -> list:
    """Trials that count against the budget: complete ones (a diverged run completes with +inf).  A FAIL is
    a crash or a configuration error, not a result: a rerun asks for a replacement."""
    import optuna
    return [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]


def tune_arm(experiment: str, arm: str, spec: dict, plan: dict, out: Path, extra: Sequence[str]) -> dict:
    """Run the trials this arm's study still lacks; return its best values and budget."""
    import optuna
    d = out / "tune" / arm
    db = d / "optuna.db"
    trials = study_trials(db, arm)
    todo = plan["trials"] - len(finished(trials))
    start = time.monotonic()
    if todo > 0:
        space = [f"{k}={v}" for k, v in spec.get("space", {}).items()]
        call(train_cmd(experiment, [
            *spec.get("overrides", []), *extra, f"seed={plan['tune_seed']}", *space,
            f"hydra.sweeper.n_trials={todo}", f"hydra.sweeper.study_name={arm}",
            f"hydra.sweeper.storage=sqlite:///{db.resolve()}",
            f"hydra.sweeper.sampler.seed={plan['sampler_seed'] + len(finished(trials))}",
            f"hydra.sweep.dir={d / f'launch{len(trials)}'}"]), d / "tune.log")
        trials = study_trials(db, arm)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE     # diverged runs return inf
            and t.value is not None and math.isfinite(t.value)]
    if not done:
        raise RuntimeError(f"arm {arm}: no tuning trial completed; see {d / 'tune.log'}")
    best = min(done, key=lambda t: t.value)
    return {"arm": arm, "best": dict(best.params), "best_val": best.value, "trial": best.number,
            "complete": len(done), "failed": len(finished(trials)) - len(done), "budget": plan["trials"],
            "crashed": len(trials) - len(finished(trials)),
            "space": spec.get("space", {}), "tune_seconds": time.monotonic() - start}


def completed_seeds(d: Path) -> set[int]:
    out = set()
    for s in d.glob("seed*/summary.json"):
        summary = read_summary(s.parent) or {}
        if summary.get("status") in ("completed", "diverged"):    # a diverged seed diverges again: keep it
            out.add(int(summary["seed"]))
    return out


def final_arm(experiment: str, arm: str, spec: dict, best: dict, plan: dict, out: Path,
              extra: Sequence[str]) -> float:
    d = out / "final" / arm
    values_file = d / "values.json"               # the values these seeds ran at: a re-tuned arm reruns them
    if values_file.is_file() and json.loads(values_file.read_text()) != best:
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    values_file.write_text(json.dumps(best))
    todo = [s for s in plan["seeds"] if s not in completed_seeds(d)]
    start = time.monotonic()
    if todo:
        for s in todo:                                     # an interrupted seed starts again from scratch
            shutil.rmtree(d / f"seed{s}", ignore_errors=True)
        values = [f"{k}={v}" for k, v in best.items()]
        call(train_cmd(experiment, [
            *spec.get("overrides", []), *extra, *values, "hydra/sweeper=basic",
            f"seed={','.join(map(str, todo))}", f"hydra.sweep.dir={d}", "hydra.sweep.subdir=seed${seed}"]),
            d / "final.log")
    return time.monotonic() - start


def fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def tuned_section(experiment: str, plan: dict, tuned: list[dict], timing: dict) -> str:
    rows = ["| arm | tuned values | best val/loss | trials (complete / diverged / budget) | search space |",
            "|---|---|---|---|---|"]
    for t in tuned:
        values = ", ".join(f"{k}={fmt(v)}" for k, v in t["best"].items())
        space = "; ".join(f"{k}: {v}" for k, v in t["space"].items())
        rows.append(f"| {t['arm']} | {values} | {t['best_val']:.5g} | {t['complete']} / {t['failed']} / "
                    f"{t['budget']} | {space} |")
    return "\n".join([
        f"# Tuned comparison: `{experiment}`", "",
        f"Protocol (docs/tuning.md): per arm, {plan['trials']} Optuna trials (TPE, sampler seed "
        f"{plan['sampler_seed']}) minimise the final **validation** loss at training seed {plan['tune_seed']}; "
        f"then {len(plan['seeds'])} runs (seeds {', '.join(map(str, plan['seeds']))}) at the arm's best values, "
        "scored on the held-out **test** split.", "", *rows, "",
        f"Wall time: {timing.get('total_s', 0):.0f} s (tuning {timing.get('tune_s', 0):.0f} s, final runs "
        f"{timing.get('final_s', 0):.0f} s) over {timing.get('invocations', 1)} invocation(s); load average at "
        f"the start {timing.get('load_start', '?')}, at the end {timing.get('load_end', '?')}.", "",
        "## Final runs at the tuned values", ""])


def report(experiment: str, plan: dict, tuned: list[dict], timing: dict, out: Path) -> Path:
    from contnet.report import make_report
    from contnet.report.stats import parse_target
    targets = [parse_target(f"val/loss={plan['target']}")] if plan.get("target") is not None else []
    # val/loss first: it is logged along the run (time-to-target); final runs that all diverged before an
    # evaluation logged neither key, and their report still says so (DNF) rather than failing
    make_report([out / "final"], out_dir=out, targets=targets, metrics=["val/loss", "test/loss"],
                ignore=["seed"], quiet=True, require_logged=False)
    body = (out / "report.md").read_text(encoding="utf-8")
    if body.startswith("# "):                     # its title becomes our section's
        body = body.split("\n", 1)[1]
    path = out / "report.md"
    path.write_text(tuned_section(experiment, plan, tuned, timing) + body, encoding="utf-8")
    return path


def add_timing(path: Path, now: dict) -> dict:
    """Seconds summed over every invocation that worked on this folder (a resumed run adds its own)."""
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        before = {}
    total = dict(now, invocations=int(before.get("invocations", 0)) + 1,
                 load_start=before.get("load_start", now["load_start"]))
    for key in ("tune_s", "final_s", "total_s"):
        total[key] = float(before.get(key, 0.0)) + float(now.get(key, 0.0))
    path.write_text(json.dumps(total, indent=2))
    return total


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def parse_seeds(text: str) -> list[int]:
    """`--seeds 0,1,2` as integers ≥ 0 (a ConfigError line naming the first that is not one)."""
    from contnet.registry import ConfigError
    for s in text.split(","):
        if not (s.strip().isascii() and s.strip().isdigit()):
            raise ConfigError(f"--seeds {text}: {s.strip()!r} is not a seed (an integer ≥ 0); give comma-separated "
                              "seeds, e.g. --seeds 0,1,2")
    return [int(s) for s in text.split(",")]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m contnet.tune", description=__doc__.split("\n")[0])
    p.add_argument("experiment", help="experiment=<tune preset>, e.g. experiment=tune_digits_ae")
    p.add_argument("overrides", nargs="*", help="overrides for every run, e.g. trainer.max_steps=100")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: outputs/tune/<preset>)")
    p.add_argument("--trials", type=int, default=None, help="trials per arm (default: the preset's tune.trials)")
    p.add_argument("--seeds", default=None, help="final seeds, e.g. 0,1,2 (default: the preset's tune.seeds)")
    p.add_argument("--arms", default=None, help="a subset of the preset's arms, e.g. adam,cadam")
    p.add_argument("--tune-only", action="store_true", help="stop after tuning (print the best values)")
    return p


def checked_plan(args, experiment: str) -> tuple[dict, list[str]]:
    """The study's plan and arms, every input checked first (ConfigError: one line)."""
    from contnet.cli.checks import check_overrides
    from contnet.cli.main import config_groups
    from contnet.registry import ConfigError
    presets = [name for name in config_groups()["experiment"] if name.startswith("tune_")]
    if experiment not in presets:
        what = "not a tuning preset" if experiment in config_groups()["experiment"] else "no such preset"
        raise ConfigError(f"experiment={experiment}: {what}; choose one of: {', '.join(presets)} "
                          "(conf/experiment/tune_*.yaml)")
    check_overrides([f"experiment={experiment}", *args.overrides], output_dir=False)   # as `contnet train` does
    plan = plan_from(compose_preset(experiment, args.overrides), args.trials,
                     parse_seeds(args.seeds) if args.seeds else None)
    arms = list(plan["arms"])
    if args.arms:
        unknown = [a for a in args.arms.split(",") if a not in plan["arms"]]
        if unknown:
            raise ConfigError(f"--arms {','.join(unknown)}: not in the preset; its arms are {', '.join(arms)}")
        arms = args.arms.split(",")
    seeded = [o for o in args.overrides if o.split("=", 1)[0].lstrip("+~") == "seed"]
    if seeded:
        raise ConfigError(f"{seeded[0]}: the driver sets the seeds; use --seeds for the final runs "
                          "(the tuning runs use the preset's tune.tune_seed)")
    if plan["trials"] < 1 or not plan["seeds"]:
        raise ConfigError("--trials must be ≥ 1 and --seeds must name at least one seed")
    return plan, arms


def main(argv: list[str] | None = None) -> int:
    from contnet.registry import ConfigError
    args = parser().parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    experiment = args.experiment.split("=", 1)[-1]
    try:
        plan, arms = checked_plan(args, experiment)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or REPO / "outputs" / "tune" / experiment
    out.mkdir(parents=True, exist_ok=True)
    timing = {"load_start": load_avg()}
    t0 = time.monotonic()
    try:
        tuned = [tune_arm(experiment, a, plan["arms"][a], plan, out, args.overrides) for a in arms]
        timing["tune_s"] = time.monotonic() - t0
        (out / "tuned.json").write_text(json.dumps(tuned, indent=2))
        for t in tuned:
            print(f"[tune] {t['arm']}: best val/loss {t['best_val']:.5g} at "
                  + ", ".join(f"{k}={fmt(v)}" for k, v in t["best"].items()), flush=True)
        if args.tune_only:
            return 0
        t1 = time.monotonic()
        for t in tuned:
            final_arm(experiment, t["arm"], plan["arms"][t["arm"]], t["best"], plan, out, args.overrides)
        timing["final_s"] = time.monotonic() - t1
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    timing["total_s"] = time.monotonic() - t0
    timing["load_end"] = load_avg()
    print(f"[tune] done in {timing['total_s']:.0f} s", flush=True)
    timing = add_timing(out / "timing.json", timing)
    path = report(experiment, plan, tuned, timing, out)
    print(f"[tune] wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    from contnet.cli.main import run_command
    sys.exit(run_command("tune", main))
