"""Data made in the test, never downloaded: files in each dataset's on-disk format, tiny tasks, synthetic run
directories for `contnet report`."""
from __future__ import annotations

import json
import math
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

SHARED_E2E = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "e2e"


# --- torchvision's on-disk formats -----------------------------------------------------------------------------

def write_idx(root, folder, n_train=60, n_test=20):
    """MNIST-style idx files (train and t10k) under root/folder/raw."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", 2051, n, 28, 28) + imgs.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 2049, n) + labels.tobytes())


def write_cifar(root, per_batch=12, n_test=10):
    """CIFAR-10's python batches under root/cifar-10-batches-py."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [*[(f"data_batch_{i}", per_batch) for i in range(1, 6)], ("test_batch", n_test)]:
        with open(d / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "labels": list(np.arange(n) % 10)}, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f)


# --- image tasks in memory ----------------------------------------------------------------------------------

def images(n=40, c=3, h=8, w=8):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, c, h, w, generator=g), torch.arange(n) % 10


def image_task_pair(pad=4):
    """The same 40 8×8 images as an augmented task and as a plain one."""
    from contnet.tasks.augment import AugmentedImageTask
    from contnet.tasks.base import TaskMeta, TensorTask
    x, y = images()
    meta = lambda: TaskMeta("img", "classify", (3, 8, 8), 10)                      # noqa: E731
    data = {"train": (x, y), "val": (x[:10] + 1, y[:10])}
    return AugmentedImageTask(meta(), data, pad=pad), TensorTask(meta(), data)


# --- E2E (data-to-text) -------------------------------------------------------------------------------------

def e2e_dir(root: Path, n_valid: int = 8, n_test: int = 3, shared: bool = True) -> Path:
    """root/e2e with valid.txt and test.txt of n_valid / n_test meaning representations: a few real E2E lines when
    `shared` and the shared folder is there, generated ones (seeds 7 and 8) otherwise."""
    from contnet.tasks import e2e_data
    d = root / "e2e"
    d.mkdir()
    for split, n_mrs, seed in (("valid", n_valid, 7), ("test", n_test, 8)):
        if shared and (SHARED_E2E / f"{split}.txt").exists():
            lines = (SHARED_E2E / f"{split}.txt").read_text(encoding="utf-8").splitlines()
            keep = list(dict.fromkeys(line.split("||")[0] for line in lines))[:n_mrs]
            lines = [line for line in lines if line.split("||")[0] in keep]
        else:
            lines = [f"{mr}||{ref}" for mr, ref in e2e_data.synthetic_e2e(n_mrs, seed)]
        (d / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


def build_e2e(data_dir, peft, **task_kw):
    """The E2E task (smoke scale, 16 training pairs) and tiny-gpt2 wrapped by `peft`."""
    from omegaconf import OmegaConf

    from contnet.registry import MODELS, PEFTS, TASKS
    tcfg = OmegaConf.create({"name": "e2e", "data_dir": str(data_dir), "scale": "smoke", "meteor": False,
                             "download": False, "train_size": 16, "generation": {"max_new_tokens": 8},
                             **task_kw})
    task = TASKS.get("e2e")(tcfg, 0)
    model = MODELS.get("tiny-gpt2")(OmegaConf.create({"name": "tiny-gpt2", "homotopy": False}), task)
    ramp = {"lambda_ramp_steps": 2} if peft == "solo" else {}      # a key of solo only: the others refuse it
    model = PEFTS.get(peft)(OmegaConf.create({"name": peft, **ramp}), model, task)
    return task, model


# --- run directories for `contnet report` -------------------------------------------------------------------

def write_run(path: Path, *, optimizer: str = "adam", lr: float = 1e-3, seed: int = 0,
              status: str | None = "completed", val_loss=(1.0, 0.5, 0.2), step_times=(0.0, 1.0, 2.0),
              val_acc=None, lam=None, torn_line: bool = False, data_dir: str = "/data/a",
              hydra_dir: bool = True) -> Path:
    """A run directory following docs/ARCHITECTURE.md; metrics logged at steps 0, 10, 20."""
    import yaml
    path.mkdir(parents=True)
    config = {"task": {"name": "digits", "data_dir": data_dir},
              "model": {"name": "mlp", "depth": 2, "width": 64},
              "optimizer": {"name": optimizer, "lr": lr,
                            **({"betas": [0.9, 0.999]} if optimizer == "adam" else {"alpha": 0.99})},
              "trainer": {"max_steps": 20, "batch_size": 32, "resume": None},
              "logger": {"name": "jsonl", "wandb_group": f"g-{seed}"},
              "seed": seed}
    if hydra_dir:
        (path / ".hydra").mkdir()
        (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
        (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}"]))
    rows = []
    for i, loss in enumerate(val_loss):
        row = {"step": 10 * i, "train/loss": loss * 1.1, "val/loss": loss, "time_s": step_times[i], "lr": lr}
        if val_acc is not None:
            row["val/acc"] = val_acc[i]
        if lam is not None:
            row["lambda"] = lam[i]
        rows.append(row)
    lines = [json.dumps(r) for r in rows]
    if torn_line:
        lines.append('{"step": 30, "val/lo')
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if status is not None:
        last = rows[-1]
        finite = [r for r in rows if math.isfinite(r["val/loss"])]
        summary = {"status": status, "steps": last["step"], "wall_time_s": last["time_s"] + 0.5,
                   "trainable_params": 100, "total_params": 100, "seed": seed,
                   "final": {k: v for k, v in last.items() if "/" in k},
                   "best": {"val/loss": min(r["val/loss"] for r in finite)},
                   "task": "digits", "model": "mlp", "optimizer": optimizer, "peft": "none",
                   "versions": {"contnet": "0.1.0"}}
        if status == "failed":
            summary.pop("final"), summary.pop("best")
        (path / "summary.json").write_text(json.dumps(summary))
    return path
