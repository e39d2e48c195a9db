"""torchvision image tasks (MNIST, Fashion-MNIST, CIFAR-10), loaded once into memory as tensors.

Data live in `task.data_dir` in torchvision's on-disk format; `task.download=true` fetches them for
users who are online.  Missing files offline fail with one line naming the path and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from contnet.registry import ConfigError
from contnet.schema import opt
from .augment import AugmentOptions, image_task
from .common import (ReconstructOptions, TaskOptions, data_folder, data_root, download_failure, make_task,
                     register_with_autoencoder, split_indices, subset)
from .image_files import check_torchvision_files


@dataclass
class ImageOptions(TaskOptions):
    """Keys of every torchvision task."""
    data_dir: Optional[str] = None   # torchvision on-disk layout; null: $CONTNET_DATA, else ~/.cache/contnet/data
    download: bool = True            # fetch when missing (needs network); false: fail with a clear message
    n_train: Optional[int] = opt(None, gt=0, integer=True)   # subset of the official training set (null: all)
    n_test: Optional[int] = opt(None, gt=0, integer=True)    # subset of the official test set (null: all)
    flatten: bool = False            # give vectors instead of (C, H, W) images
    val_frac: float = opt(0.1, ge=0, lt=1)                   # carved from the training set with split_seed
    split_seed: int = 0

    def root(self) -> Path:
        return data_folder(self.data_dir, data_root())


@dataclass
class ImageClassifyOptions(AugmentOptions, ImageOptions):
    """A torchvision classification task: ImageOptions plus normalization and augmentation."""

    def check(self) -> None:
        super().check()
        if self.flatten and (self.augment or self.normalize):
            raise self.error("flatten", "task.augment and task.normalize need (C, H, W) images; set "
                                        "task.flatten=false, or task.augment=false task.normalize=false")


@dataclass
class MNISTConfig(ImageClassifyOptions):
    """torchvision mnist; downloaded into data_dir.  augment stays off: flips are wrong for digits."""


@dataclass
class FashionMNISTConfig(ImageClassifyOptions):
    """torchvision fashion_mnist; downloaded into data_dir."""


@dataclass
class CIFAR10Config(ImageClassifyOptions):
    """torchvision cifar10; downloaded into data_dir; normalized and augmented (the standard CIFAR recipe)."""
    normalize: bool = True
    augment: bool = True


@dataclass
class MNISTAEConfig(ReconstructOptions, ImageOptions):
    """torchvision mnist as an autoencoder task (never normalized or augmented)."""


@dataclass
class FashionMNISTAEConfig(ReconstructOptions, ImageOptions):
    """torchvision fashion_mnist as an autoencoder task."""


@dataclass
class CIFAR10AEConfig(ReconstructOptions, ImageOptions):
    """torchvision cifar10 as an autoencoder task."""


_DATASETS = {  # name -> (torchvision class name, number of classes, config, autoencoder config)
    "mnist": ("MNIST", 10, MNISTConfig, MNISTAEConfig),
    "fashion_mnist": ("FashionMNIST", 10, FashionMNISTConfig, FashionMNISTAEConfig),
    "cifar10": ("CIFAR10", 10, CIFAR10Config, CIFAR10AEConfig),
}


def _load(kind: str, root: Path, train: bool, download: bool):
    import torchvision
    cls = getattr(torchvision.datasets, _DATASETS[kind][0])
    problem = check_torchvision_files(_DATASETS[kind][0], root, download, unpack=True)
    if problem:                          # missing offline, or corrupt: name the exact file
        raise ConfigError(problem)
    try:
        ds = cls(root=str(root), train=train, download=download)
    except (RuntimeError, OSError) as e:   # missing files, or a download that failed (offline)
        if download:
            why = download_failure(e, getattr(cls, "mirrors", None) or [cls.url])     # MNIST's mirrors, CIFAR's url
            raise ConfigError(f"could not download {kind} into {root}: {why}; put the dataset files into {root} "
                              "(torchvision layout) and rerun with task.download=false, or rerun where the network "
                              "reaches the host") from None
        raise ConfigError(f"{kind} data not found under {root}; put the files there (torchvision layout) or run "
                          f"once online with task.download=true task.data_dir={root}") from None
    data = ds.data if isinstance(ds.data, np.ndarray) else ds.data.numpy()
    x = torch.tensor(data, dtype=torch.float32) / 255.0
    x = x.permute(0, 3, 1, 2) if x.ndim == 4 else x.unsqueeze(1)     # -> N, C, H, W
    y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
    return x.contiguous(), y


def _image_task(cfg: ImageOptions, kind: str, reconstruct: bool):
    x_tr, y_tr = _load(kind, cfg.root(), True, cfg.download)
    x_te, y_te = _load(kind, cfg.root(), False, cfg.download)
    if cfg.flatten:
        x_tr, x_te = x_tr.flatten(1), x_te.flatten(1)
    x_tr, y_tr = subset(x_tr, y_tr, cfg.n_train, cfg.split_seed)
    x_te, y_te = subset(x_te, y_te, cfg.n_test, cfg.split_seed)
    # validation is carved from the training set with a fixed seed; the official test set stays test
    idx = split_indices(len(x_tr), cfg.val_frac, 0.0, cfg.split_seed)
    splits = {"train": (x_tr[idx["train"]], y_tr[idx["train"]]), "val": (x_tr[idx["val"]], y_tr[idx["val"]]),
              "test": (x_te, y_te)}
    task = make_task(cfg, splits, _DATASETS[kind][1], reconstruct)
    return task if reconstruct else image_task(cfg, task)            # normalize/augment: classification only


def _check_task_files(cfg: ImageOptions, kind: str) -> None:
    problem = check_torchvision_files(_DATASETS[kind][0], cfg.root(), cfg.download)
    if problem:
        raise ConfigError(problem)


for _kind, (_, _, _config, _ae_config) in _DATASETS.items():
    register_with_autoencoder(_kind, lambda cfg, reconstruct, kind=_kind: _image_task(cfg, kind, reconstruct),
                              _config, _ae_config, check=lambda cfg, kind=_kind: _check_task_files(cfg, kind))
