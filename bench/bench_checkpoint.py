"""Checkpoint cost relative to training: one `checkpoint.save` (model + Adam state + RNG, temp file +
fsync + rename) against one training step, for digits MLPs of growing width (docs/reliability.md).

The default policy (trainer.checkpoint_every_s=60, next save no sooner than 100× the last save's
duration) spends save / max(60 s, 100·save) of the wall time on checkpoints: ≤ 1 % by construction;
this measures the figures it rests on.  The baseline is measured in the same run: `--repeats` rounds, each a
block of `--block` training steps then one save, so a save and the steps it is divided by share the machine's
load of that moment; a row gives min/median/max over the rounds of the step time, the save time and their ratio.

    python bench/bench_checkpoint.py [--repeats 15] [--block 10] [--out docs/results/checkpoint_cost]

With `--out`, one artifact row per model size goes to <out>/runs.jsonl with <out>/meta.json
(contnet/studies/artifact.py), each with the load average when its rounds began.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from contnet.conf import compose
from contnet.engine import checkpoint
from contnet.registry import MODELS, OPTIMIZERS, TASKS
from contnet.studies import artifact

SIZES = ((128, 2), (1024, 2), (2048, 4))        # (width, depth): 26 k, 1.1 M, 12.7 M parameters


def spread(values: list[float], digits: int = 4) -> dict:
    return {"min": round(min(values), digits), "median": round(statistics.median(values), digits),
            "max": round(max(values), digits)}


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def build(width: int, depth: int, batch_size: int):
    """The digits MLP, its Adam (state made by 3 steps) and a step function on one fixed batch."""
    cfg = compose(["task=digits", f"model.width={width}", f"model.depth={depth}", "optimizer=adam"])
    task = TASKS.get("digits")(cfg.task, 0)
    model = MODELS.get("mlp")(cfg.model, task)
    opt = OPTIMIZERS.get("adam")(cfg.optimizer, model)
    batch = next(iter(task.train_batches(batch_size, torch.Generator().manual_seed(0), torch.device("cpu"))))

    def step():
        def closure():
            opt.zero_grad(set_to_none=True)
            loss = task.loss(model, batch)
            loss.backward()
            return loss
        opt.step(closure)
    for _ in range(3):
        step()
    return model, opt, step


def measure(width: int, depth: int, repeats: int, block: int, batch_size: int = 64) -> dict:
    """Rounds of `block` steps then one save; the figures of one model size (times in ms)."""
    model, opt, step = build(width, depth, batch_size)
    load_start, steps_ms, saves_ms = artifact.load(), [], []
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "checkpoints" / "last.pt"

        def save():
            checkpoint.save(path, model=model, optimizer=opt, scheduler=None,
                            progress={"step": 3, "epoch": 0, "batch_in_epoch": 3, "best": {}, "last": {}})
        save()                                              # the folder and the file exist from here on
        for _ in range(repeats):
            steps_ms.append(1e3 * timed(lambda: [step() for _ in range(block)]) / block)
            saves_ms.append(1e3 * timed(save))
        size = path.stat().st_size
    ratios = [s / t for s, t in zip(saves_ms, steps_ms)]
    save_s = statistics.median(saves_ms) / 1e3
    return {"params": sum(p.numel() for p in model.parameters()), "mb": size / 2**20,
            "step_ms": spread(steps_ms), "save_ms": spread(saves_ms), "save_over_step": spread(ratios, 2),
            "default_pct": 100 * save_s / max(60.0, 100 * save_s),
            "every_500_pct": 100 * statistics.median(ratios) / 500, "load_start": load_start}


def row(width: int, depth: int, r: dict, repeats: int, block: int) -> dict:
    """The artifact row of one model size: medians in `final`, min/median/max beside them."""
    final = {"params": r["params"], "ckpt_mb": round(r["mb"], 2), "step_ms": r["step_ms"]["median"],
             "save_ms": r["save_ms"]["median"], "save_over_step": r["save_over_step"]["median"],
             "default_policy_pct": round(r["default_pct"], 4), "every_500_steps_pct": round(r["every_500_pct"], 3)}
    return {"run": f"mlp-{width}x{depth}", "arm": f"mlp-{width}x{depth}",
            "choices": {"task": "digits", "model": "mlp", "optimizer": "adam", "peft": None, "scheduler": None},
            "overrides": ["task=digits", f"model.width={width}", f"model.depth={depth}", "optimizer=adam",
                          "trainer.batch_size=64"],
            "seed": 0, "status": "completed", "steps": repeats * block, "final": final, "best": {},
            "wall_s": None, "train_time_s": None, "timing": {k: r[k] for k in ("step_ms", "save_ms", "save_over_step")},
            "repeats": repeats, "block": block, "threads": 1, "load_start": r["load_start"]}


def show(r: dict) -> str:
    return (f"{r['params']:>10,} {r['mb']:>8.2f} {r['step_ms']['median']:>8.3f} {r['save_ms']['median']:>8.2f} "
            f"{r['save_over_step']['min']:>6.1f}/{r['save_over_step']['median']:.1f}/{r['save_over_step']['max']:.1f}"
            f" {r['default_pct']:>16.4f} {r['every_500_pct']:>17.2f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15, help="rounds of (block of steps, one save)")
    ap.add_argument("--block", type=int, default=10, help="training steps per round")
    ap.add_argument("--out", type=Path, help="write runs.jsonl + meta.json here (e.g. docs/results/checkpoint_cost)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    env, t0 = artifact.environment(), time.perf_counter()
    print("checkpoint.save vs one training step (digits MLP, Adam, batch 64, 1 thread; medians, save/step min/med/max)")
    print(f"{'params':>10} {'ckpt MB':>8} {'step ms':>8} {'save ms':>8} {'save/step':>14} "
          f"{'default policy %':>16} {'every 500 steps %':>17}")
    rows = []
    for width, depth in SIZES:
        r = measure(width, depth, args.repeats, args.block)
        print(show(r), flush=True)
        rows.append(row(width, depth, r, args.repeats, args.block))
    if args.out:
        command = " ".join(["python bench/bench_checkpoint.py", *(sys.argv[1:] if argv is None else argv)])
        artifact.write(args.out, rows, command, env, time.perf_counter() - t0, threads=1)
        print(f"wrote {args.out / artifact.RUNS} and {args.out / artifact.META}")


if __name__ == "__main__":
    main()
