"""Issue 11's Solo Connection study: a resumable driver over `contnet train experiment=solo_study_cpu`.

    python -m contnet.study_solo screen  [--root outputs/solo_study] [--only NAME ...] [--dry-run]
    python -m contnet.study_solo confirm NAME ... [--seeds 0,1,2] [--steps 150] [--test-mrs 100]
    python -m contnet.study_solo collect            # copy summaries (+ small metrics.jsonl) to docs/results/solo_study

Each run lives in <root>/<stage>/<name>[-s<seed>]; a run whose summary.json says `completed` is skipped, any other
is continued with trainer.resume=auto, so the study can be stopped and restarted (across sessions too).
Checkpoints of completed runs are deleted (the adapter directory stays); --keep-checkpoints keeps them.
The screen's rows run in the order below: the most informative first, so a screen cut short still answers.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

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

CONFIRM = ["task.generate_splits=[test]", "trainer.eval_every=50"]


def status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "summary.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def run_one(run_dir: Path, overrides: list[str], dry: bool, keep: bool) -> int:
    if status(run_dir) == "completed":
        print(f"skip {run_dir} (completed)", flush=True)
        return 0
    cmd = [sys.executable, "-m", "contnet.cli.main", "train", "experiment=solo_study_cpu", *overrides,
           f"hydra.run.dir={run_dir}", "trainer.resume=auto", "trainer.progress=false"]
    print(" ".join(cmd[2:]), flush=True)
    if dry:
        return 0
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "driver.log", "a") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    if rc == 0 and not keep:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    print(f"  -> rc {rc}, {status(run_dir)}", flush=True)
    return rc


def collect(root: Path, dest: Path) -> int:
    n = 0
    for summary in sorted(root.glob("*/*/summary.json")):
        out = dest / summary.parent.parent.name / summary.parent.name
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(summary, out / "summary.json")
        for name in ("metrics.jsonl", "overrides.txt"):
            src = summary.parent / name
            if src.exists() and src.stat().st_size < 200_000:
                shutil.copy2(src, out / name)
        n += 1
    print(f"collected {n} runs into {dest}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m contnet.study_solo", description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=["screen", "confirm", "collect"])
    ap.add_argument("names", nargs="*", help="confirm: screen rows to repeat; screen: a subset (default all)")
    ap.add_argument("--root", type=Path, default=Path("outputs/solo_study"))
    ap.add_argument("--dest", type=Path, default=Path("docs/results/solo_study"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--test-mrs", type=int, default=100)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--keep-checkpoints", action="store_true")
    a = ap.parse_args(argv)
    if a.stage == "collect":
        return collect(a.root, a.dest)
    unknown = [n for n in a.names if n not in SCREEN]
    if unknown:
        print(f"error: unknown study rows {unknown}; choose from: {', '.join(SCREEN)}", file=sys.stderr)
        return 2
    jobs = []
    if a.stage == "screen":
        jobs = [(a.root / "screen" / n, SCREEN[n]) for n in (a.names or SCREEN)]
    else:
        if not a.names:
            print("error: confirm needs the screen rows to repeat, e.g. solo-stride2-lr2e-3 lora-lr2e-3", file=sys.stderr)
            return 2
        extra = CONFIRM + [f"trainer.max_steps={a.steps}", f"scheduler.warmup_steps={max(1, a.steps // 10)}",
                           f"task.test_size={a.test_mrs}"]
        jobs = [(a.root / "confirm" / f"{n}-s{s}", SCREEN[n] + extra + [f"seed={s}"])
                for n in a.names for s in a.seeds.split(",")]
    failed = 0
    for run_dir, overrides in jobs:
        if not a.dry_run:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "overrides.txt").write_text("\n".join(overrides) + "\n")
        failed += run_one(run_dir, overrides, a.dry_run, a.keep_checkpoints) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
