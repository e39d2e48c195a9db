"""Embedded tasks that need no download: digits (scikit-learn), mnist1d (procedural), parity."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from contnet.registry import TASKS
from contnet.schema import opt
from .common import ReconstructOptions, SplitOptions, make_task, register_with_autoencoder, split_indices


@dataclass
class DigitsConfig(SplitOptions):
    """scikit-learn's bundled 8×8 digits (1,797 images, 10 classes); no download."""


@dataclass
class DigitsAEConfig(ReconstructOptions, DigitsConfig):
    """digits as an autoencoder task (MSE reconstruction through a code layer)."""


@dataclass
class MNIST1DConfig(SplitOptions):
    """The mnist1d package: 40-sample 1-D digits, generated procedurally (no download)."""
    num_samples: int = opt(5000, gt=0, integer=True)
    data_seed: int = 42          # the generator's seed (42 is the package's reference dataset)

    def check(self) -> None:
        super().check()
        if self.num_samples < 10:
            raise self.error("num_samples", "must be at least 10")


@dataclass
class MNIST1DAEConfig(ReconstructOptions, MNIST1DConfig):
    """mnist1d as an autoencoder task."""


@dataclass
class ParityConfig(SplitOptions):
    """n-bit parity of uniform random bit vectors (synthetic); 2 classes."""
    n_bits: int = opt(10, gt=0, integer=True)   # the continuation paper's hard setting is 40 bits (with 200k samples)
    num_samples: int = opt(6000, gt=0, integer=True)
    signed: bool = True          # inputs as ±1 (false: 0/1)
    data_seed: int = 0


def _split(cfg: SplitOptions, x: torch.Tensor, y: torch.Tensor):
    idx = split_indices(len(x), cfg.val_frac, cfg.test_frac, cfg.split_seed)
    return {k: (x[i], y[i]) for k, i in idx.items()}


@functools.lru_cache(maxsize=1)
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (1797 × 64 pixels 0..16, labels): the CSV file that `load_digits` reads,
    read here without importing scikit-learn (~0.9 s of every short run's start); `load_digits` where the
    file is not at its usual place.  Read once per process (a study's runs share it, ~20 ms each); read-only."""
    import importlib.util
    import os
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(root, "datasets", "data", "digits.csv.gz")
        if os.path.exists(path):
            table = np.loadtxt(path, delimiter=",")
            return _frozen(table[:, :-1], table[:, -1].astype(np.int64))
    from sklearn.datasets import load_digits
    d = load_digits()
    return _frozen(d.data, d.target)


def _frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _digits(cfg: DigitsConfig, reconstruct: bool):
    data, target = digits_arrays()
    x = torch.tensor(data, dtype=torch.float32) / 16.0       # pixels 0..16 -> [0, 1]
    y = torch.tensor(target, dtype=torch.long)
    return make_task(cfg, _split(cfg, x, y), 10, reconstruct)


register_with_autoencoder("digits", _digits, DigitsConfig, DigitsAEConfig)


@functools.lru_cache(maxsize=4)
def mnist1d_arrays(num_samples: int, data_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Generate (procedurally, no download) once per process; ~2 s, so cached in memory."""
    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, data_seed
    d = make_dataset(args)
    return np.concatenate([d["x"], d["x_test"]]), np.concatenate([d["y"], d["y_test"]])


def _mnist1d(cfg: MNIST1DConfig, reconstruct: bool):
    xs, ys = mnist1d_arrays(cfg.num_samples, cfg.data_seed)
    x, y = torch.tensor(xs, dtype=torch.float32), torch.tensor(ys, dtype=torch.long)
    return make_task(cfg, _split(cfg, x, y), 10, reconstruct)


register_with_autoencoder("mnist1d", _mnist1d, MNIST1DConfig, MNIST1DAEConfig)


@TASKS.register("parity", config=ParityConfig)
def parity(cfg: ParityConfig, seed):
    """n-bit parity: uniform random bit vectors (as ±1 or 0/1), label = number of ones mod 2."""
    g = torch.Generator().manual_seed(cfg.data_seed)
    bits = torch.randint(0, 2, (cfg.num_samples, cfg.n_bits), generator=g)
    y = bits.sum(1) % 2
    x = bits.float() * 2 - 1 if cfg.signed else bits.float()
    return make_task(cfg, _split(cfg, x, y.long()), 2, reconstruct=False)
