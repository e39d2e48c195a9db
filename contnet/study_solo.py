"""Issue 11's Solo Connection study: a resumable driver over `contnet train experiment=solo_study_cpu`.

    python -m contnet.study_solo screen  [--root outputs/solo_study] [--only NAME ...] [--dry-run]
    python -m contnet.study_solo confirm NAME ... [--seeds 0,1,2] [--steps 150] [--test-mrs 100]
    python -m contnet.study_solo confirm --best      # the screen's best row of each method (solo, lora, full)
    common: [--jobs N] runs N at a time (a GPU holds several); [--set key=value ...] extra overrides for every run
    python -m contnet.study_solo collect            # copy summaries (+ small metrics.jsonl) to docs/results/solo_study
    python -m contnet.study_solo table DIR          # markdown table of DIR/*/summary.json, seeds (-sN) pooled

Each run lives in <root>/<stage>/<name>[-s<seed>]; a run whose summary.json says `completed` is skipped, any other
is continued with trainer.resume=auto, so the study can be stopped and restarted (across sessions too).
Checkpoints of completed runs are deleted (the adapter directory stays); --keep-checkpoints keeps them.
The screen's rows run in the order below: the most informative first, so a screen cut short still answers.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from contnet.engine.run import read_summary

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
    return (read_summary(run_dir) or {}).get("status")


def best_rows(root: Path, key: str = "val/loss") -> list[str]:
    """The completed screen row with the lowest `key` for each method (the row name's prefix)."""
    best: dict[str, tuple[float, str]] = {}
    for name in SCREEN:
        summary = read_summary(root / "screen" / name)
        if summary is None:
            continue
        value = summary.get("final", {}).get(key)
        method = name.split("-")[0]
        if summary.get("status") == "completed" and value is not None and value < best.get(method, (float("inf"),))[0]:
            best[method] = (value, name)
    return [name for _, name in sorted(best.values())]


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


SCORES = ("val/loss", "test/bleu", "test/nist", "test/meteor", "test/rouge_l", "test/cider")


def table(root: Path) -> str:
    """Rows named like the run directories (a trailing -s<seed> pooled): mean ± sample std, best val/loss first."""
    import re
    import statistics
    groups: dict[str, list[dict]] = {}
    for path in sorted(root.glob("*/summary.json")):
        summary = read_summary(path.parent) or {}
        if summary.get("status") == "completed":
            groups.setdefault(re.sub(r"-s\d+$", "", path.parent.name), []).append(summary)
    keys = [k for k in SCORES if any(k in s["final"] for g in groups.values() for s in g)]

    def cell(values: list[float]) -> str:
        mean = statistics.fmean(values)
        return f"{mean:.3f}" if len(values) == 1 else f"{mean:.3f} ± {statistics.stdev(values):.3f}"

    lines = ["| run | seeds | trainable | " + " | ".join(keys) + " | wall s |", "|---|---:|---:|" + "---:|" * (len(keys) + 1)]
    for name, runs in sorted(groups.items(), key=lambda kv: statistics.fmean(r["final"].get("val/loss", 1e9) for r in kv[1])):
        cells = [cell([r["final"][k] for r in runs if k in r["final"]]) if any(k in r["final"] for r in runs) else ""
                 for k in keys]
        lines.append(f"| {name} | {len(runs)} | {runs[0]['trainable_params']:,} | " + " | ".join(cells)
                     + f" | {statistics.fmean(r['wall_time_s'] for r in runs):.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m contnet.study_solo", description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=["screen", "confirm", "collect", "table"])
    ap.add_argument("names", nargs="*", help="confirm: screen rows to repeat; screen: a subset (default all); "
                    "table: result directories")
    ap.add_argument("--root", type=Path, default=Path("outputs/solo_study"))
    ap.add_argument("--dest", type=Path, default=Path("docs/results/solo_study"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--test-mrs", type=int, default=100)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--keep-checkpoints", action="store_true")
    ap.add_argument("--best", action="store_true", help="confirm: the screen's best row of each method")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time, an integer ≥ 1")
    ap.add_argument("--set", nargs="*", default=[], dest="extra", help="overrides added to every run")
    a = ap.parse_args(argv)
    if a.jobs < 1:
        print(f"error: --jobs {a.jobs}: must be an integer ≥ 1 (the number of runs at a time)", file=sys.stderr)
        return 2
    if a.stage == "collect":
        return collect(a.root, a.dest)
    if a.stage == "table":
        for name in a.names:
            print(table(Path(name)))
        return 0
    if a.best:
        a.names = a.names + [n for n in best_rows(a.root) if n not in a.names]
        print("best of the screen:", " ".join(a.names), flush=True)
    unknown = [n for n in a.names if n not in SCREEN]
    if unknown:
        print(f"error: unknown study rows {unknown}; choose from: {', '.join(SCREEN)}", file=sys.stderr)
        return 2
    jobs = []
    if a.stage == "screen":
        jobs = [(a.root / "screen" / n, SCREEN[n] + a.extra) for n in (a.names or SCREEN)]
    else:
        if not a.names:
            print("error: confirm needs the screen rows to repeat, e.g. solo-stride2-lr2e-3 lora-lr2e-3", file=sys.stderr)
            return 2
        extra = CONFIRM + [f"trainer.max_steps={a.steps}", f"scheduler.warmup_steps={max(1, a.steps // 10)}",
                           f"task.test_size={a.test_mrs}"]
        jobs = [(a.root / "confirm" / f"{n}-s{s}", SCREEN[n] + extra + a.extra + [f"seed={s}"])
                for n in a.names for s in a.seeds.split(",")]
    def one(job) -> int:
        run_dir, overrides = job
        if not a.dry_run:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "overrides.txt").write_text("\n".join(overrides) + "\n")
        return run_one(run_dir, overrides, a.dry_run, a.keep_checkpoints) != 0

    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:     # in the listed order, N at a time
        failed = sum(pool.map(one, jobs))
    return 1 if failed else 0


if __name__ == "__main__":
    from contnet.cli.main import run_command
    sys.exit(run_command("study_solo", main))
