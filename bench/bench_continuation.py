"""Step time of C-Adam (and PARC) over torch.optim.Adam on the same model, in the same run.

A training step is what the engine times: closure (zero_grad, forward, MSE, backward) + step.  Both
optimizers drive the same homotopy autoencoder (C-Adam with λ < 1 throughout, so every step pays
for the gradient-norm record and every u_freq-th step for the Δλ rule and the secant predictor).
Blocks of `u_freq`·k steps alternate between the two to cancel drift; the ratio of the median
per-step times is printed (goal ≤ 1.05).  All use the same Adam kernel: `--kernel auto` (default) is
contnet's optimizer.fused=auto (fused on CUDA, foreach on CPU).  `--parc` adds PARC/Adam (no goal: PARC
also projects θ onto the arclength hyperplane at every step, and tests C2's early stop on the device).

    python bench/bench_continuation.py [--device cuda] [--steps 2000] [--batch 256] [--kernel fused] [--parc]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from omegaconf import OmegaConf
from torch import nn

from contnet.continuation.homotopy import make_activation
from contnet.continuation.state import LambdaState, attach_lambda
from contnet.registry import OPTIMIZERS


class Autoencoder(nn.Module):
    def __init__(self, d=784, widths=(512, 256, 64), code=2):
        super().__init__()
        lam = LambdaState(1.0)
        sizes = [d, *widths, code, *reversed(widths), d]
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if b != code and i < len(sizes) - 2:          # linear code and output layers
                layers.append(make_activation("sigmoid", lam))
        self.net = nn.Sequential(*layers)
        attach_lambda(self, lam)

    def forward(self, x):
        return self.net(x)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=600, help="timed steps per optimizer")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--u-freq", type=int, default=10)
    ap.add_argument("--block", type=int, default=10, help="u_freq periods per timed block")
    ap.add_argument("--keep-denormals", action="store_true",
                    help="CPU: keep denormal floats (by default they are flushed to zero, as trainer.flush_denormal "
                         "does).  Near λ=0 the autoencoder is almost linear, Adam's second moments fall into the "
                         "denormal range and x86 arithmetic on them is ~10x slower: measured C-Adam/Adam 1.14-1.15 "
                         "with denormals, 1.00-1.05 without, on this 2-core machine")
    ap.add_argument("--kernel", choices=("auto", "foreach", "fused"), default="auto",
                    help="Adam's kernel for every optimizer here (auto: fused on CUDA, foreach on CPU)")
    ap.add_argument("--parc", action="store_true", help="also time optimizer=parc (λ < 1 throughout)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    kernel = args.kernel if args.kernel != "auto" else "fused" if device.type == "cuda" else "foreach"
    kw = dict(foreach=True, fused=False) if kernel == "foreach" else dict(foreach=None, fused=True)
    if device.type == "cpu" and not args.keep_denormals:
        torch.set_flush_denormal(True)
    torch.manual_seed(0)
    base = Autoencoder().to(device)
    models = {"adam": base, "cadam": copy.deepcopy(base)}
    opts = {
        "adam": torch.optim.Adam(models["adam"].parameters(), lr=1e-3, **{k: v for k, v in kw.items() if v}),
        # tiny Δλ bounds keep λ < 1 for the whole benchmark: continuation is active on every step
        "cadam": OPTIMIZERS.get("cadam")(OmegaConf.create(dict(
            name="cadam", lr=1e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0, **kw,
            u_freq=args.u_freq, delta_l=1e-6, delta_l_prev=2.5e-6, delta_l_min=1e-7, delta_l_max=2e-6,
            window=50, adaptive_start=0)), models["cadam"]),
    }
    if args.parc:     # tiny arclength steps keep λ < 1; the default corrector check (C2's early stop)
        models["parc"] = copy.deepcopy(base)
        opts["parc"] = OPTIMIZERS.get("parc")(OmegaConf.create(dict(
            name="parc", lr=1e-3, **kw, delta_s=1e-6, min_arc_len=1e-7, max_arc_len=2e-6,
            natural_step=1e-6)), models["parc"])
    data = torch.rand(16, args.batch, 784, device=device)

    def run_block(name, n, offset):
        model, opt = models[name], opts[name]
        sync(device)
        t0 = time.perf_counter()
        for i in range(n):
            x = data[(offset + i) % len(data)]

            def closure():
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.mse_loss(model(x), x)
                loss.backward()
                return loss
            opt.step(closure)
        sync(device)
        return (time.perf_counter() - t0) / n

    block = args.u_freq * args.block
    for name in opts:                                   # warm-up (allocator, kernels, Adam state)
        run_block(name, block, 0)
    times = {name: [] for name in opts}
    for b in range(max(1, args.steps // block)):
        for name in (list(opts) if b % 2 == 0 else list(opts)[::-1]):
            times[name].append(run_block(name, block, b * block))
    lam = float(models["cadam"].homotopy_lambda.value)
    assert opts["cadam"].driver.active and lam < 1.0, "continuation must stay active while timing"
    if args.parc:
        assert opts["parc"].driver.active and float(models["parc"].homotopy_lambda.value.detach()) < 1.0
    adam, cadam = statistics.median(times["adam"]), statistics.median(times["cadam"])
    ratio = cadam / adam
    print(f"device={device} model=AE 784-512-256-64-2 (sigmoid homotopy) batch={args.batch} "
          f"u_freq={args.u_freq} blocks={len(times['adam'])}x{block} steps"
          + (f" denormals {'kept' if args.keep_denormals else 'flushed'}" if device.type == "cpu" else ""))
    print(f"torch.optim.Adam({kernel}=True): {adam * 1e3:.3f} ms/step")
    print(f"C-Adam (λ={lam:.4g}, active):     {cadam * 1e3:.3f} ms/step")
    print(f"ratio C-Adam / Adam: {ratio:.3f} (goal ≤ 1.05)")
    if args.parc:
        parc = statistics.median(times["parc"])
        lam_parc = float(models["parc"].homotopy_lambda.value.detach())
        print(f"PARC (λ={lam_parc:.4g}, active):       {parc * 1e3:.3f} ms/step")
        print(f"ratio PARC / Adam: {parc / adam:.3f} (no goal)")
    return ratio


if __name__ == "__main__":
    main()
