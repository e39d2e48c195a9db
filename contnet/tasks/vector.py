"""Embedded tasks that need no download: digits (scikit-learn), mnist1d (procedural), parity."""
from __future__ import annotations

import functools

import numpy as np
import torch

from contnet.registry import TASKS, ConfigError
from .common import make_task, register_with_autoencoder, split_indices


def _split(cfg, x: torch.Tensor, y: torch.Tensor):
    idx = split_indices(len(x), float(cfg.val_frac), float(cfg.test_frac), int(cfg.split_seed))
    return {k: (x[i], y[i]) for k, i in idx.items()}


def _digits(cfg, reconstruct: bool):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0       # pixels 0..16 -> [0, 1]
    y = torch.tensor(d.target, dtype=torch.long)
    return make_task(cfg, cfg.name, _split(cfg, x, y), 10, reconstruct)


register_with_autoencoder("digits", _digits)


@functools.lru_cache(maxsize=4)
def mnist1d_arrays(num_samples: int, data_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Generate (procedurally, no download) once per process; ~2 s, so cached in memory."""
    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, data_seed
    d = make_dataset(args)
    return np.concatenate([d["x"], d["x_test"]]), np.concatenate([d["y"], d["y_test"]])


def _mnist1d(cfg, reconstruct: bool):
    if int(cfg.num_samples) < 10:
        raise ConfigError(f"task.num_samples={cfg.num_samples} is too small; use at least 10")
    xs, ys = mnist1d_arrays(int(cfg.num_samples), int(cfg.data_seed))
    x, y = torch.tensor(xs, dtype=torch.float32), torch.tensor(ys, dtype=torch.long)
    return make_task(cfg, cfg.name, _split(cfg, x, y), 10, reconstruct)


register_with_autoencoder("mnist1d", _mnist1d)


@TASKS.register("parity")
def parity(cfg, seed):
    """n-bit parity: uniform random bit vectors (as ±1 or 0/1), label = number of ones mod 2."""
    n_bits, n = int(cfg.n_bits), int(cfg.num_samples)
    if n_bits <= 0 or n <= 0:
        raise ConfigError(f"task.n_bits={n_bits} and task.num_samples={n} must be positive integers")
    g = torch.Generator().manual_seed(int(cfg.data_seed))
    bits = torch.randint(0, 2, (n, n_bits), generator=g)
    y = bits.sum(1) % 2
    x = bits.float() * 2 - 1 if cfg.get("signed", True) else bits.float()
    return make_task(cfg, cfg.name, _split(cfg, x, y.long()), 2, reconstruct=False)
