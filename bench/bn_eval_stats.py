"""BatchNorm statistics after a short run (docs/results/gpu.md, "BatchNorm"): ResNet-20 on 28×28 upsampled digit
images, 200 steps; val/acc in eval mode (running statistics, optionally re-estimated) vs with batch statistics.

    python bench/bn_eval_stats.py [--steps 200] [--bn-recalibrate 10]     (0: the stale running statistics)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_check_sections as g  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--bn-recalibrate", type=int, default=10)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from sklearn.datasets import load_digits
    from contnet.engine.loop import fit
    from contnet.engine.setup import Setup
    from contnet.registry import OPTIMIZERS
    from contnet.tasks.base import TaskMeta, TensorTask
    d = load_digits()
    x = F.interpolate(torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16, size=(28, 28), mode="bilinear")
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, va = perm[:1400], perm[1400:]
    task = TensorTask(TaskMeta("digit-images-28", "classify", (1, 28, 28), 10),
                      {"train": (x[tr], y[tr]), "val": (x[va], y[va])})
    for name, lr in (("adam", 1e-3), ("sgd", 0.1)):
        model, cfg = g.build("resnet", task, optimizer=name)
        cfg.lr = lr
        opt = OPTIMIZERS.get(name)(cfg, model)
        with tempfile.TemporaryDirectory() as tmp:
            tcfg = g.trainer_cfg(torch.device("cpu"), args.steps, 64, 50, bn_recalibrate=args.bn_recalibrate)
            fit(model=model, task=task, optimizer=opt, scheduler=None, seed=0, run_dir=Path(tmp), loggers=[],
                tcfg=tcfg, setup=Setup.prepare(tcfg, model, task))
        xv, yv = task.tensors("val")
        with torch.no_grad():
            model.eval()
            acc_eval = (model(xv).argmax(-1) == yv).float().mean().item()
            model.train()
            acc_batch = (model(xv).argmax(-1) == yv).float().mean().item()
        print(f"{name}: {args.steps} steps, bn_recalibrate={args.bn_recalibrate}: eval-mode val/acc {acc_eval:.3f}, "
              f"batch statistics {acc_batch:.3f}")


if __name__ == "__main__":
    main()
