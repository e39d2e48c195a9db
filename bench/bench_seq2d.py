"""Sequential2D overhead: forward+backward of seq2d(pattern=mlp) over the equivalent nn.Sequential.

Three sizes in one run; both models hold the same weights (the seq2d one is built by the same
builder `model=seq2d` uses, then loaded from the Sequential).  Timings alternate between the two
models `--repeats` times (both models back to back in each repeat, order alternating); times are
medians over repeats of the mean seconds per forward+backward, and the ratio is the median of the
per-repeat ratios seq2d / Sequential, which pairs measurements taken under the same machine load
(goal <= 1.10).  On CPU the clock is this process's CPU time, so a shared, loaded machine still
gives comparable numbers; on CUDA it is wall time after synchronisation.
Usage: `python bench/bench_seq2d.py [--device cuda] [--threads N] [--repeats 21]`.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from contnet.models import seq2d as B

SIZES = {  # name: (layer sizes, batch)
    "small  (digits-like)": ([64, 128, 128, 10], 64),
    "medium (mnist-like)": ([784, 512, 512, 10], 128),
    "large": ([1024, 1024, 1024, 1024, 10], 256),
}


def sequential(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@torch.no_grad()
def seq2d_copy_of(seq: nn.Sequential, sizes: list[int]) -> nn.Module:
    model = B.mlp(sizes, "relu")
    for l, lin in enumerate([m for m in seq if isinstance(m, nn.Linear)], start=1):
        model.map.block(l, l - 1).weight.copy_(lin.weight)
        model.map.biases[l].copy_(lin.bias)
    return model


def seconds_per_step(model, x, y, iters: int, device) -> float:
    params = list(model.parameters())  # zero_grad as an optimizer does it: over a fixed list
    if device.type == "cuda":
        sync, clock = torch.cuda.synchronize, time.perf_counter
    else:
        sync, clock = (lambda: None), time.process_time
    sync()
    start = clock()
    for _ in range(iters):
        for p in params:
            p.grad = None
        F.cross_entropy(model(x), y).backward()
    sync()
    return (clock() - start) / iters


def bench(sizes, batch, device, repeats: int, budget_s: float) -> tuple[float, float]:
    torch.manual_seed(0)
    seq = sequential(sizes).to(device)
    s2d = seq2d_copy_of(seq, sizes).to(device)
    x = torch.randn(batch, sizes[0], device=device)
    y = torch.randint(0, sizes[-1], (batch,), device=device)
    torch.testing.assert_close(s2d(x), seq(x))
    once = max(seconds_per_step(seq, x, y, 3, device), 1e-6)  # warm-up and iteration count
    seconds_per_step(s2d, x, y, 3, device)
    iters = max(5, int(budget_s / repeats / 2 / once))
    t_seq, t_s2d = [], []
    for r in range(repeats):
        pair = [(seq, t_seq), (s2d, t_s2d)]
        for model, times in (pair if r % 2 == 0 else pair[::-1]):
            times.append(seconds_per_step(model, x, y, iters, device))
    ratio = statistics.median(b / a for a, b in zip(t_seq, t_s2d))
    return statistics.median(t_seq), statistics.median(t_s2d), ratio


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--budget-s", type=float, default=4.0, help="seconds of timing per size")
    # 1 thread by default: process CPU time also counts the spin-waits of idle intra-op workers,
    # which makes multi-thread ratios unstable on a shared machine.  0 = torch's default.
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"seq2d(pattern=mlp) vs nn.Sequential, forward+backward, device={device}, "
          f"torch {torch.__version__}, threads={torch.get_num_threads()}")
    print(f"{'size':<22} {'layers':<28} {'batch':>5} {'Sequential ms':>14} {'seq2d ms':>9} {'ratio':>6}")
    ratios = []
    for name, (sizes, batch) in SIZES.items():
        t_seq, t_s2d, ratio = bench(sizes, batch, device, args.repeats, args.budget_s)
        ratios.append(ratio)
        print(f"{name:<22} {str(sizes):<28} {batch:>5} {1e3 * t_seq:>14.3f} {1e3 * t_s2d:>9.3f} "
              f"{ratio:>6.3f}")
    verdict = "meets" if max(ratios) <= 1.10 else "misses"
    print(f"max ratio {max(ratios):.3f} ({verdict} the goal <= 1.10)")


if __name__ == "__main__":
    main()
