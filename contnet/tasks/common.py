"""Shared helpers for tensor tasks: fixed-seed splits, centring, and the task constructor."""
from __future__ import annotations

import torch

from contnet.registry import TASKS, ConfigError
from .base import TaskMeta, TensorTask


def split_indices(n: int, val_frac: float, test_frac: float, split_seed: int) -> dict[str, torch.Tensor]:
    """A fixed permutation (independent of the run seed) cut into train/val/test."""
    for key, frac in (("task.val_frac", val_frac), ("task.test_frac", test_frac)):
        if not 0.0 <= frac < 1.0:
            raise ConfigError(f"{key}={frac} is out of range; use a fraction in [0, 1)")
    if val_frac + test_frac >= 1.0:
        raise ConfigError(f"task.val_frac + task.test_frac = {val_frac + test_frac} leaves no training data; keep the sum below 1")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    n_val, n_test = int(round(n * val_frac)), int(round(n * test_frac))
    return {"val": perm[:n_val], "test": perm[n_val:n_val + n_test], "train": perm[n_val + n_test:]}


def subset(x: torch.Tensor, y: torch.Tensor, n: int | None, seed: int):
    """First `n` examples of a fixed shuffle (n=None keeps all)."""
    if n is None or n >= len(x):
        return x, y
    if n <= 0:
        raise ConfigError(f"subset size {n} must be positive (or null for all)")
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx], y[idx]


def make_task(cfg, name: str, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], num_classes: int,
              reconstruct: bool) -> TensorTask:
    """Build a classify or reconstruct TensorTask from float x / long y tensors per split.

    Reconstruction tasks may centre the data with the *training* mean (`task.center`), applied to
    every split: the closed-form PCA start (model.init=pca) assumes centred data.
    """
    x_train = splits["train"][0]
    input_shape = tuple(x_train.shape[1:])
    if reconstruct and cfg.get("center", False):
        mean = x_train.mean(0, keepdim=True)
        splits = {k: (x - mean, y) for k, (x, y) in splits.items()}
    if reconstruct:
        code = int(cfg.get("code_size", 2))
        if code <= 0:
            raise ConfigError(f"task.code_size={code} must be a positive integer")
        out_dim = int(x_train[0].numel())
        meta = TaskMeta(name=name, objective="reconstruct", input_shape=input_shape, output_dim=out_dim,
                        code_size=code)
        data = {k: (x,) for k, (x, y) in splits.items() if len(x)}
    else:
        meta = TaskMeta(name=name, objective="classify", input_shape=input_shape, output_dim=num_classes)
        data = {k: (x, y) for k, (x, y) in splits.items() if len(x)}
    return TensorTask(meta, data)


def register_with_autoencoder(name: str, build) -> None:
    """Register `name` (classification) and `name_ae` (reconstruction) from one `build(cfg, reconstruct)`."""
    TASKS.register(name)(lambda cfg, seed: build(cfg, reconstruct=False))
    TASKS.register(f"{name}_ae")(lambda cfg, seed: build(cfg, reconstruct=True))
