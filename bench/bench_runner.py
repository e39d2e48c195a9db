"""Loop overhead: `contnet train` on digits vs a hand-written PyTorch loop (same model, batch, data, steps).

Both run in this process as back-to-back pairs, `--repeats` times; the median steps/s of each is
reported, and the median of the per-pair ratios contnet / plain (goal ≥ 0.95), which is robust to
load from other processes that changes between pairs.  Evaluations are excluded from contnet's time (the
summary's train_time_s covers batching, the optimizer step, logging and progress).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from contnet.conf import compose


def contnet_steps_per_s(steps: int, batch: int, threads: int) -> float:
    from contnet.engine.run import run
    cfg = compose([f"trainer.max_steps={steps}", f"trainer.batch_size={batch}", "trainer.eval_every=0",
                   "trainer.eval_train=false", "trainer.progress=false", "trainer.device=cpu",
                   f"trainer.threads={threads}"])
    with tempfile.TemporaryDirectory() as d:
        import contextlib
        import io
        with contextlib.redirect_stdout(io.StringIO()):
            s = run(cfg, Path(d))
    return s["steps"] / s["train_time_s"]


def plain_steps_per_s(steps: int, batch: int) -> float:
    from contnet.registry import MODELS, TASKS
    cfg = compose([])
    torch.manual_seed(0)
    task = TASKS.get("digits")(cfg.task, 0)
    model = MODELS.get("mlp")(cfg.model, task)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = task.tensors("train")
    done, t0 = 0, time.perf_counter()
    while done < steps:
        perm = torch.randperm(len(x))
        for i in range(0, len(x) - batch + 1, batch):
            idx = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both loops (1: the runner's "
                    "default for small CPU models, trainer.threads=auto)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    plain_steps_per_s(100, a.batch)          # warm-up (allocator, thread pool)
    ours, plain, ratios = [], [], []
    for i in range(a.repeats):
        first_plain = i % 2 == 0                   # alternate the order inside a pair
        pl = plain_steps_per_s(a.steps, a.batch) if first_plain else None
        ours.append(contnet_steps_per_s(a.steps, a.batch, torch.get_num_threads()))
        plain.append(pl if pl is not None else plain_steps_per_s(a.steps, a.batch))
        ratios.append(ours[-1] / plain[-1])
    p, o = statistics.median(plain), statistics.median(ours)
    print(f"digits mlp batch {a.batch}, {a.steps} steps, median of {a.repeats}, torch threads {torch.get_num_threads()}")
    print(f"  plain PyTorch loop : {p:8.1f} steps/s")
    print(f"  contnet train      : {o:8.1f} steps/s")
    print(f"  ratio contnet/plain: {statistics.median(ratios):.3f}   (median of {a.repeats} paired ratios; "
          f"range {min(ratios):.3f}-{max(ratios):.3f}; goal >= 0.95)")


if __name__ == "__main__":
    main()
