"""torchvision image tasks (MNIST, Fashion-MNIST, CIFAR-10), loaded once into memory as tensors.

Data live in `task.data_dir` in torchvision's on-disk format; `task.download=true` fetches them for
users who are online.  Missing files offline fail with one line naming the path and the fix.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from contnet.registry import TASK_CHECKS, ConfigError
from .augment import image_task
from .common import make_task, register_with_autoencoder, split_indices, subset
from .image_files import check_torchvision_files

_DATASETS = {  # name -> (torchvision class name, number of classes)
    "mnist": ("MNIST", 10),
    "fashion_mnist": ("FashionMNIST", 10),
    "cifar10": ("CIFAR10", 10),
}


def _load(kind: str, data_dir: str, train: bool, download: bool):
    import torchvision
    cls = getattr(torchvision.datasets, _DATASETS[kind][0])
    root = Path(data_dir).expanduser()
    problem = check_torchvision_files(_DATASETS[kind][0], root, download, unpack=True)
    if problem:                          # missing offline, or corrupt: name the exact file
        raise ConfigError(problem)
    try:
        ds = cls(root=str(root), train=train, download=download)
    except (RuntimeError, OSError) as e:   # missing files, or a download that failed (offline)
        if download:
            raise ConfigError(f"could not download {kind} into {root} ({e.__class__.__name__}); copy the dataset "
                              f"files into {root} (torchvision layout) and rerun with task.download=false") from None
        raise ConfigError(f"{kind} data not found under {root}; put the files there (torchvision layout) or run "
                          f"once online with task.download=true task.data_dir={root}") from None
    data = ds.data if isinstance(ds.data, np.ndarray) else ds.data.numpy()
    x = torch.tensor(data, dtype=torch.float32) / 255.0
    x = x.permute(0, 3, 1, 2) if x.ndim == 4 else x.unsqueeze(1)     # -> N, C, H, W
    y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
    return x.contiguous(), y


def _image_task(cfg, kind: str, reconstruct: bool):
    x_tr, y_tr = _load(kind, cfg.data_dir, True, bool(cfg.download))
    x_te, y_te = _load(kind, cfg.data_dir, False, bool(cfg.download))
    if cfg.get("flatten", False):
        x_tr, x_te = x_tr.flatten(1), x_te.flatten(1)
    x_tr, y_tr = subset(x_tr, y_tr, cfg.get("n_train"), int(cfg.split_seed))
    x_te, y_te = subset(x_te, y_te, cfg.get("n_test"), int(cfg.split_seed))
    # validation is carved from the training set with a fixed seed; the official test set stays test
    idx = split_indices(len(x_tr), float(cfg.val_frac), 0.0, int(cfg.split_seed))
    splits = {"train": (x_tr[idx["train"]], y_tr[idx["train"]]), "val": (x_tr[idx["val"]], y_tr[idx["val"]]),
              "test": (x_te, y_te)}
    return image_task(cfg, make_task(cfg, cfg.name, splits, _DATASETS[kind][1], reconstruct))   # normalize/augment


def _check_task_files(cfg, kind: str) -> None:
    problem = check_torchvision_files(_DATASETS[kind][0], cfg.data_dir, bool(cfg.download))
    if problem:
        raise ConfigError(problem)


for _kind in _DATASETS:
    register_with_autoencoder(_kind, lambda cfg, reconstruct, kind=_kind: _image_task(cfg, kind, reconstruct))
    for _name in (_kind, f"{_kind}_ae"):
        TASK_CHECKS.register(_name)(lambda cfg, kind=_kind: _check_task_files(cfg, kind))
