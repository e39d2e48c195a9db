"""BatchNorm statistics after a short run (docs/results/gpu.md, "BatchNorm"): ResNet-20 on 28×28 upsampled digit
images, 200 steps; val/acc in eval mode (running statistics, stale or re-estimated) vs with batch statistics.

    python bench/bn_eval_stats.py [--steps 200] [--bn-recalibrate 0 10] [--out docs/results/batchnorm]

Each arm (Adam 1e-3 with and without weight decay 5e-4; SGD 0.1, momentum 0.9, Nesterov, weight decay 5e-4) trains
once per `--bn-recalibrate` value through contnet's loop (`fit`): 0 leaves the running statistics as training left
them (stale), 10 is the engine's default re-estimate before each evaluation.  Training is the same either way, so the
batch-statistics accuracy of a pair must agree (the script says so when it does not).  With `--out`, one
artifact row per (arm, bn_recalibrate) goes to <out>/runs.jsonl with <out>/meta.json
(contnet/studies/artifact.py): `final` holds `val/acc_eval` (eval mode) and `val/acc_batch_stats`.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_check_sections as g  # noqa: E402

# arm -> (optimizer, its config's values; the rest: the optimizer's defaults).  The first table's Adam had SGD's
# weight decay 5e-4 (the shared ResNet builder's settings merged into Adam's YAML at 827ead6): "adam-wd5e-4"
# reruns it; "adam" is Adam's own default (no weight decay).
OPTIMIZERS = {"adam-wd5e-4": ("adam", {"lr": 1e-3, "weight_decay": 5e-4}),
              "adam": ("adam", {"lr": 1e-3}),
              "sgd": ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4})}
TASK = "digit-images-28"


def digit_images():
    """sklearn's 8×8 digits, bilinearly upsampled to 28×28: 1,400 train / 397 val (fixed split)."""
    from sklearn.datasets import load_digits
    from contnet.tasks.base import TaskMeta, TensorTask
    d = load_digits()
    x = F.interpolate(torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16, size=(28, 28), mode="bilinear")
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, va = perm[:1400], perm[1400:]
    return TensorTask(TaskMeta(TASK, "classify", (1, 28, 28), 10), {"train": (x[tr], y[tr]), "val": (x[va], y[va])})


def accuracies(model, task) -> tuple[float, float]:
    """val/acc with the running statistics (eval mode) and with the batch's own statistics (train mode)."""
    xv, yv = task.tensors("val")
    with torch.no_grad():
        model.eval()
        acc_eval = (model(xv).argmax(-1) == yv).float().mean().item()
        model.train()
        acc_batch = (model(xv).argmax(-1) == yv).float().mean().item()
    return acc_eval, acc_batch


def train_one(task, arm: str, steps: int, bn_recalibrate: int) -> dict:
    """One run through contnet's loop; returns its artifact row (run folder: a temporary one, not kept)."""
    from contnet.engine.loop import fit
    from contnet.engine.setup import Setup
    from contnet.registry import OPTIMIZERS as REGISTRY
    name, values = OPTIMIZERS[arm]
    model, _ = g.build("resnet", task)                     # ResNet-20 (cifar variant), torch seed 0
    opt = REGISTRY.get(name)(g.conf("optimizer", name, **values), model)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tcfg = g.trainer_cfg(torch.device("cpu"), steps, 64, 50, bn_recalibrate=bn_recalibrate)
        summary = fit(model=model, task=task, optimizer=opt, scheduler=None, seed=0, run_dir=Path(tmp), loggers=[],
                      tcfg=tcfg, setup=Setup.prepare(tcfg, model, task))
    wall = time.perf_counter() - t0
    acc_eval, acc_batch = accuracies(model, task)
    return {"run": f"{arm}/bn_recalibrate={bn_recalibrate}", "arm": arm,
            "choices": {"task": TASK, "model": "resnet", "optimizer": name, "peft": None, "scheduler": None},
            "overrides": ["model.variant=cifar", *(f"optimizer.{k}={v}" for k, v in values.items()),
                          f"trainer.bn_recalibrate={bn_recalibrate}", f"trainer.max_steps={steps}",
                          "trainer.batch_size=64"],
            "seed": 0, "status": summary.get("status"), "steps": summary.get("steps"),
            "final": {"val/acc_eval": acc_eval, "val/acc_batch_stats": acc_batch}, "best": {},
            "wall_s": round(wall, 2), "train_time_s": summary.get("train_time_s"), "bn_recalibrate": bn_recalibrate}


def check_same_training(rows: list[dict]) -> None:
    """Recalibration must not change training: per optimizer, every run's batch-statistics accuracy is one number."""
    for arm in OPTIMIZERS:
        seen = {r["final"]["val/acc_batch_stats"] for r in rows if r["arm"] == arm}
        if len(seen) > 1:
            print(f"note: {arm}: batch-statistics accuracy differs between bn_recalibrate values {sorted(seen)}: "
                  "training was not the same")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--bn-recalibrate", type=int, nargs="+", default=[0, 10],
                    help="batches for the re-estimate before evaluation; 0: the stale running statistics")
    ap.add_argument("--out", type=Path, help="write runs.jsonl + meta.json here (e.g. docs/results/batchnorm)")
    args = ap.parse_args(argv)
    from contnet.studies import artifact
    torch.set_num_threads(1)
    env, t0 = artifact.environment(), time.perf_counter()
    task = digit_images()
    rows = []
    for arm in OPTIMIZERS:
        for k in args.bn_recalibrate:
            rows.append(train_one(task, arm, args.steps, k))
            r = rows[-1]
            print(f"{arm}: {args.steps} steps, bn_recalibrate={k}: eval-mode val/acc {r['final']['val/acc_eval']:.3f}, "
                  f"batch statistics {r['final']['val/acc_batch_stats']:.3f}", flush=True)
    check_same_training(rows)
    if args.out:
        command = " ".join(["python bench/bn_eval_stats.py", *(sys.argv[1:] if argv is None else argv)])
        artifact.write(args.out, rows, command, env, time.perf_counter() - t0, threads=1, steps=args.steps)
        print(f"wrote {args.out / artifact.RUNS} and {args.out / artifact.META}")


if __name__ == "__main__":
    main()
