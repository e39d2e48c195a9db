"""Checkpoint cost relative to training: one `checkpoint.save` (model + Adam state + RNG, temp file +
fsync + rename) against one training step, for digits MLPs of growing width.

The default policy (trainer.checkpoint_every_s=60, next save no sooner than 100× the last save's
duration) spends save / max(60 s, 100·save) of the wall time on checkpoints: ≤ 1 % by construction;
this prints the measured figures it rests on.  Run: .venv/bin/python bench/bench_checkpoint.py
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from contnet.conf import compose
from contnet.engine import checkpoint
from contnet.registry import MODELS, OPTIMIZERS, TASKS


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(width: int, depth: int, batch_size: int = 64) -> dict:
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
        step()                                              # Adam state exists from here on
    step_s = median_time(step, 30)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "checkpoints" / "last.pt"

        def save():
            checkpoint.save(path, model=model, optimizer=opt, scheduler=None,
                            progress={"step": 3, "epoch": 0, "batch_in_epoch": 3, "best": {}, "last": {}})
        save_s = median_time(save, 5)
        size = path.stat().st_size
    params = sum(p.numel() for p in model.parameters())
    interval = max(60.0, 100 * save_s)
    return {"params": params, "mb": size / 2**20, "step_ms": step_s * 1e3, "save_ms": save_s * 1e3,
            "save_in_steps": save_s / step_s, "default_pct": 100 * save_s / interval,
            "every_500_pct": 100 * save_s / (500 * step_s)}


def main() -> None:
    torch.set_num_threads(1)
    print("checkpoint.save vs one training step (digits MLP, Adam, batch 64, 1 thread; medians)")
    print(f"{'params':>10} {'ckpt MB':>8} {'step ms':>8} {'save ms':>8} {'save/step':>9} "
          f"{'default policy %':>16} {'every 500 steps %':>17}")
    for width, depth in ((128, 2), (1024, 2), (2048, 4)):
        r = measure(width, depth)
        print(f"{r['params']:>10,} {r['mb']:>8.2f} {r['step_ms']:>8.3f} {r['save_ms']:>8.2f} {r['save_in_steps']:>9.1f} "
              f"{r['default_pct']:>16.4f} {r['every_500_pct']:>17.2f}")


if __name__ == "__main__":
    main()
