"""Shared pieces of the tasks: their typed configs' common fields, fixed-seed splits, centring, the data
folder, and the tensor-task constructor.

Task configs (contnet.schema.Options) share fields through base classes: `SplitOptions` (in-memory
data cut into train/val/test by a fixed seed), `ReconstructOptions` (the autoencoder twin of a task:
`code_size`, `center`), `ImageOptions` (torchvision files, contnet/tasks/images.py) and `NLGOptions`
(data-to-text, contnet/tasks/nlg_options.py).  Each registered task has its own class whose defaults are
the CLI's (conf/task/<name>.yaml only names it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from contnet.registry import TASK_CHECKS, TASKS
from contnet.schema import Options, opt
from .base import TaskMeta, TensorTask

DEFAULT_DATA_ROOT = "~/.cache/contnet/data"


def data_root() -> Path:
    """Where `task.data_dir: null` points: $CONTNET_DATA, else ~/.cache/contnet/data (read at use time)."""
    return Path(os.environ.get("CONTNET_DATA") or DEFAULT_DATA_ROOT).expanduser()


@dataclass
class TaskOptions(Options):
    """Keys every task has."""
    name: str = ""


@dataclass
class SplitOptions(TaskOptions):
    """Data held in memory and cut into train/val/test by a fixed permutation."""
    val_frac: float = opt(0.15, ge=0, lt=1)
    test_frac: float = opt(0.15, ge=0, lt=1)
    split_seed: int = 0          # the train/val/test split is fixed by this seed, not by the run seed

    def check(self) -> None:
        super().check()
        if self.val_frac + self.test_frac >= 1:
            raise self.error("val_frac", f"with task.test_frac={self.test_frac:g} the sum "
                                         f"{self.val_frac + self.test_frac:g} leaves no training data; keep it below 1")


@dataclass
class ReconstructOptions(Options):
    """The autoencoder twin of a task (MSE reconstruction through a code layer)."""
    code_size: int = opt(2, gt=0, integer=True)   # bottleneck width (2, as in the continuation papers)
    # subtract the training mean from every split; auto: when model.init is pca or auto (the default),
    # resolved by contnet/engine/run.py resolve_auto (the closed-form PCA start assumes centred data)
    center: Any = opt("auto", choices=(True, False, "auto"))


def split_indices(n: int, val_frac: float, test_frac: float, split_seed: int) -> dict[str, torch.Tensor]:
    """A fixed permutation (independent of the run seed) cut into train/val/test (fractions: the schema's
    rules, SplitOptions / ImageOptions)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    n_val, n_test = int(round(n * val_frac)), int(round(n * test_frac))
    return {"val": perm[:n_val], "test": perm[n_val:n_val + n_test], "train": perm[n_val + n_test:]}


def subset(x: torch.Tensor, y: torch.Tensor, n: int | None, seed: int):
    """First `n` examples of a fixed shuffle (n=None keeps all)."""
    if n is None or n >= len(x):
        return x, y
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx], y[idx]


def make_task(cfg, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], num_classes: int,
              reconstruct: bool) -> TensorTask:
    """Build a classify or reconstruct TensorTask named `cfg.name` from float x / long y tensors per split.

    Reconstruction tasks may centre the data with the *training* mean (`task.center`), applied to
    every split: the closed-form PCA start (model.init=pca) assumes centred data.  `center: auto` left
    unresolved (library use without resolve_auto) centres, as the CLI does with its default model.init=auto.
    """
    x_train = splits["train"][0]
    input_shape = tuple(x_train.shape[1:])
    if not reconstruct:
        meta = TaskMeta(name=cfg.name, objective="classify", input_shape=input_shape, output_dim=num_classes)
        return TensorTask(meta, {k: (x, y) for k, (x, y) in splits.items() if len(x)})
    if cfg.center in (True, "auto"):
        mean = x_train.mean(0, keepdim=True)
        splits = {k: (x - mean, y) for k, (x, y) in splits.items()}
    meta = TaskMeta(name=cfg.name, objective="reconstruct", input_shape=input_shape,
                    output_dim=int(x_train[0].numel()), code_size=cfg.code_size)
    return TensorTask(meta, {k: (x,) for k, (x, y) in splits.items() if len(x)})


def register_with_autoencoder(name: str, build, config: type, ae_config: type, check=None) -> None:
    """Register `name` (classification) and `name_ae` (reconstruction) from one `build(cfg, reconstruct)`,
    each with its own typed config; `check(cfg)`, when given, is both tasks' file check (TASK_CHECKS)."""
    TASKS.register(name, config=config)(lambda cfg, seed: build(cfg, reconstruct=False))
    TASKS.register(f"{name}_ae", config=ae_config)(lambda cfg, seed: build(cfg, reconstruct=True))
    if check is not None:
        TASK_CHECKS.register(name, config=config)(check)
        TASK_CHECKS.register(f"{name}_ae", config=ae_config)(check)
