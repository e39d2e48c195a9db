"""Issue 11's Solo Connection study on the study runner: `contnet solo-study` over experiment=solo_study_cpu.

    contnet solo-study screen  [--root outputs/solo_study] [NAME ...] [--dry-run]
    contnet solo-study confirm NAME ... [--seeds 0,1,2] [--steps 150] [--test-mrs 100]
    contnet solo-study confirm --best          # the screen's best row of each method (solo, lora, full)
    common: [--set key=value ...] overrides for every run (e.g. trainer.device=cuda); [--jobs N] N runs at a time

A stage is a study folder <root>/<stage>/: its runs (<name>[-s<seed>]/) run in this process, one after another
(contnet.studies.runner: a run whose summary.json says completed is skipped, any other continues with
trainer.resume=auto), and its raw results are <root>/<stage>/runs.jsonl + meta.json (contnet.studies.artifact).
Checkpoints of completed runs are deleted (the adapter stays); --keep-checkpoints keeps them.  The screen's rows
run in the order below: the most informative first, so a screen cut short still answers.  The docs' tables of the
study are rendered from the stages' runs.jsonl by `contnet tables` (contnet/studies/tables.py).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from contnet.studies import artifact, runner

SOLO = ["peft=solo", "peft.rank=128", "peft.sharing=shared", "peft.lambda_mode=scheduled", "peft.alpha=null",
        "peft.skip_norm=none"]          # pinned so the screen does not move when the default of peft=solo changes


def solo(placement: str, *extra: str) -> list[str]:
    kind, _, k = placement.partition(":")
    place = [f"peft.placement={kind}"] + ([f"peft.stride={k}"] if k else [])
    merged = {o.split("=", 1)[0]: o for o in SOLO + place + list(extra)}    # a later key=value wins
    return list(merged.values())


# name -> overrides (each row: one configuration at one lr; 1 seed)
SCREEN: dict[str, list[str]] = {
    "solo-stride2-lr2e-3": solo("stride:2", "optimizer.lr=2e-3"),
    "lora-lr2e-3": ["peft=lora", "optimizer.lr=2e-3"],
    "solo-stride2-scale8-lr2e-4": solo("stride:2", "peft.alpha=1024", "optimizer.lr=2e-4"),   # α/r = 8, LoRA's
    "solo-first_last-lr2e-3": solo("first_last", "optimizer.lr=2e-3"),
    "solo-dense-fanin-lr2e-3": solo("dense", "peft.skip_norm=fan_in", "optimizer.lr=2e-3"),
    "lora-lr6e-3": ["peft=lora", "optimizer.lr=6e-3"],
    "solo-stride2-perconn-r4-lr2e-3": solo("stride:2", "peft.sharing=per_connection", "peft.rank=4",
                                            "optimizer.lr=2e-3"),          # 28 maps of rank 4 ≈ one rank-128 map
    "solo-symmetric-lr2e-3": solo("symmetric", "optimizer.lr=2e-3"),
    "solo-stride4-lr2e-3": solo("stride:4", "optimizer.lr=2e-3"),
    "full-lr2e-4": ["peft=full", "optimizer.lr=2e-4"],
    "solo-stride2-lr6e-3": solo("stride:2", "optimizer.lr=6e-3"),
    "solo-stride2-trainable-lr2e-3": solo("stride:2", "peft.lambda_mode=trainable", "optimizer.lr=2e-3"),
    "solo-stride2-fixed-lr2e-3": solo("stride:2", "peft.lambda_mode=fixed", "optimizer.lr=2e-3"),
    "lora-lr6e-4": ["peft=lora", "optimizer.lr=6e-4"],
    "solo-stride2-lr6e-4": solo("stride:2", "optimizer.lr=6e-4"),
    "solo-stride3-lr2e-3": solo("stride:3", "optimizer.lr=2e-3"),
    "full-lr6e-4": ["peft=full", "optimizer.lr=6e-4"],
    "lora-lr2e-4": ["peft=lora", "optimizer.lr=2e-4"],
    "solo-stride2-lr2e-4": solo("stride:2", "optimizer.lr=2e-4"),
    "solo-stride2-scale8-lr6e-4": solo("stride:2", "peft.alpha=1024", "optimizer.lr=6e-4"),
    "full-lr2e-3": ["peft=full", "optimizer.lr=2e-3"],
}

BASE = ["experiment=solo_study_cpu", "trainer.progress=false"]
CONFIRM = ["task.generate_splits=[test]", "trainer.eval_every=50"]


def plan(a) -> list:
    """The stage's runs (study folder <root>/<stage>): a screen row once at seed 0; a confirm row at every seed."""
    if a.stage == "screen":
        return [runner.Run(n, [*BASE, *SCREEN[n], *a.extra], 0, arm=n) for n in (a.names or SCREEN)]
    steps = [f"trainer.max_steps={a.steps}", f"scheduler.warmup_steps={max(1, a.steps // 10)}",
             f"task.test_size={a.test_mrs}"]
    return [runner.Run(f"{n}-s{s}", [*BASE, *SCREEN[n], *CONFIRM, *steps, *a.extra], int(s), arm=n)
            for n in a.names for s in a.seeds.split(",")]


def best_rows(screen: Path, key: str = "val/loss") -> list[str]:
    """The completed screen row with the lowest `key` for each method (the row name's prefix)."""
    best: dict[str, tuple[float, str]] = {}
    for name in SCREEN:
        row = artifact.run_row(screen / name, screen)
        value = row["final"].get(key)
        method = name.split("-")[0]
        if row["status"] == "completed" and value is not None and value < best.get(method, (float("inf"),))[0]:
            best[method] = (value, name)
    return [name for _, name in sorted(best.values())]


def merged_rows(study: Path, new: list[dict]) -> list[dict]:
    """The stage's rows: this invocation's, plus those of earlier invocations it did not touch."""
    old = artifact.read_rows(study) if (study / artifact.RUNS).is_file() else []
    mine = {r["run"] for r in new}
    return [r for r in old if r["run"] not in mine] + new


def run_stage(a, runs: list, argv: list[str]) -> int:
    study, env, start = a.root / a.stage, artifact.environment(), time.monotonic()

    def done(run, summary):
        status = runner.status(study / run.dir)
        print(f"{run.dir}: {status}", flush=True)
        if status == "completed" and not a.keep_checkpoints:
            shutil.rmtree(study / run.dir / "checkpoints", ignore_errors=True)

    done_rows = launch(runs, study, a.jobs, done)
    rows = [{**r, "trainable_params": params(study / r["run"])} for r in done_rows]    # the docs' tables show it
    artifact.write(study, merged_rows(study, rows), "contnet solo-study " + " ".join(argv), env, time.monotonic() - start)
    return 0 if all(r["status"] == "completed" for r in rows) else 1


def launch(runs: list, study: Path, jobs: int, done) -> list[dict]:
    """One run after another in this process, or with --jobs N each missing run as its own `contnet train`
    process, N at a time (a GPU holds several of these small runs at once); the study's rows either way."""
    if jobs == 1:
        return runner.execute(runs, study, do=runner.run_in_process, on_done=done)
    from concurrent.futures import ThreadPoolExecutor
    todo = [r for r in runs if not runner.is_done(study / r.dir)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:          # a thread waits on each run's process, in order
        for r, summary in zip(todo, pool.map(lambda r: runner.run_subprocess(r, study), todo)):
            done(r, summary)
    return runner.rows(runs, study)


def params(run_dir: Path) -> int | None:
    import json
    try:
        return json.loads((run_dir / "summary.json").read_text()).get("trainable_params")
    except (OSError, ValueError):
        return None


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="contnet solo-study", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["screen", "confirm"])
    ap.add_argument("names", nargs="*", help="confirm: screen rows to repeat; screen: a subset (default all)")
    ap.add_argument("--root", type=Path, default=Path("outputs/solo_study"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--test-mrs", type=int, default=100)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--keep-checkpoints", action="store_true")
    ap.add_argument("--best", action="store_true", help="confirm: the screen's best row of each method")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time, each its own process when > 1 (default 1: "
                    "in this process)")
    ap.add_argument("--set", nargs="*", default=[], dest="extra", help="overrides added to every run")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    a = parser().parse_args(argv)
    if a.best:
        a.names += [n for n in best_rows(a.root / "screen") if n not in a.names]
        print("best of the screen:", " ".join(a.names), flush=True)
    if a.jobs < 1:
        print(f"contnet solo-study: error: --jobs {a.jobs}: must be an integer ≥ 1 (the number of runs at a time)",
              file=sys.stderr)
        return 2
    unknown = [n for n in a.names if n not in SCREEN]
    if unknown or (a.stage == "confirm" and not a.names):
        print(f"contnet solo-study: error: unknown study rows {unknown}; choose from: {', '.join(SCREEN)}" if unknown
              else "contnet solo-study: error: confirm needs the screen rows to repeat, e.g. solo-stride2-lr2e-3 "
                   "lora-lr2e-3 (or --best)", file=sys.stderr)
        return 2
    runs = plan(a)
    if a.dry_run:
        for r in runs:
            print("contnet train " + " ".join(r.command()) + f" hydra.run.dir={a.root / a.stage / r.dir}")
        return 0
    return run_stage(a, runs, argv)
