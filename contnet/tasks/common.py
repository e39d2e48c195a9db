"""Shared pieces of the tasks: their typed configs' common fields, fixed-seed splits, centring, the data
folder, and the tensor-task constructor.

Task configs (contnet.schema.Options) share fields through base classes: `SplitOptions` (in-memory
data cut into train/val/test by a fixed seed), `ReconstructOptions` (the autoencoder twin of a task:
`code_size`, `center`), `ImageOptions` (torchvision files, contnet/tasks/images.py) and `NLGOptions`
(data-to-text, contnet/tasks/nlg_options.py).  Each registered task has its own class whose defaults are
the CLI's (conf/task/<name>.yaml only names it).
"""
from __future__ import annotations

import itertools
import os
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from contnet.registry import TASK_CHECKS, TASKS, ConfigError
from contnet.schema import Block, Options, opt
from .base import TaskMeta, TensorTask

DEFAULT_DATA_ROOT = "~/.cache/contnet/data"


def data_root() -> Path:
    """Where `task.data_dir: null` points: $CONTNET_DATA, else ~/.cache/contnet/data (read at use time)."""
    return Path(os.environ.get("CONTNET_DATA") or DEFAULT_DATA_ROOT).expanduser()


def data_folder(data_dir: str | None, default: Path) -> Path:
    """`task.data_dir` (null: `default`, under data_root()) as a Path.  A file where the folder (or one of the
    folders above it) should be is one ConfigError line: it would otherwise read as "files not found"."""
    path = Path(data_dir).expanduser() if data_dir else default
    blocker = next((p for p in (path, *path.parents) if p.exists()), None)
    if blocker is None or blocker.is_dir():
        return path
    env = os.environ.get("CONTNET_DATA")
    key = (f"task.data_dir={data_dir}" if data_dir else
           f"task.data_dir=null reads {f'CONTNET_DATA={env}' if env else DEFAULT_DATA_ROOT}")
    inside = "" if data_dir and blocker == path else f": {blocker}"
    keys = "task.data_dir" if data_dir else "task.data_dir (or CONTNET_DATA)"
    raise ConfigError(f"{key}{inside} is a file, not a directory; set {keys} to the folder that holds the dataset "
                      "files (or to a new folder for task.download=true)")


def download_failure(e: BaseException, urls: list[str]) -> str:
    """Why a download from `urls` failed, in words: the network and the host named when it could not reach them."""
    reason = _unreachable(e)
    if reason is not None:
        hosts = ", ".join(dict.fromkeys(h for h in (urlparse(u).hostname for u in urls) if h))
        proxy = " or the proxy" if urllib.request.getproxies() else ""
        return f"the network or its host ({hosts}){proxy} could not be reached ({reason})"
    return f"{e.__class__.__name__}: {' '.join(str(e).split())[:200]}"


def _unreachable(e: BaseException) -> str | None:
    """Why a failed download could not reach its host (no network, no DNS, refused, timed out), or None when it
    failed otherwise (an HTTP error, a bad checksum).  torchvision's MNIST folds the URLError of each mirror into
    the text of one RuntimeError, hence the look at the text last."""
    seen: list[BaseException] = []
    while e is not None and e not in seen:
        if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
            return str(e.reason)
        if isinstance(e, (ConnectionError, TimeoutError, socket.gaierror)):
            return str(e)
        seen.append(e)
        e = e.__cause__ or e.__context__
    found = re.search(r"<urlopen error (.+?)>", str(seen[0]) if seen else "")
    return found.group(1) if found else None


@dataclass
class TaskOptions(Options):
    """Keys every task has."""


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
        n = getattr(self, "num_samples", None)      # the generated tasks (parity, mnist1d) choose their size
        empty = self.empty_splits(n) if n is not None else []
        if empty:
            smallest = min(f for f in (self.val_frac, self.test_frac) if f > 0)
            least = next(m for m in itertools.count(max(1, int(0.5 / smallest) - 1)) if not self.empty_splits(m))
            splits = f"{' and '.join(empty)} split{'s' * (len(empty) > 1)}"
            raise self.error("num_samples", f"with task.val_frac={self.val_frac:g} and task.test_frac="
                                            f"{self.test_frac:g} the {splits} would be empty; use at least {least} "
                                            "samples (or a fraction of 0 to leave a split out)")

    def empty_splits(self, n: int) -> list[str]:
        """The splits of `n` examples that a nonzero fraction (or the rest, for train) leaves without one."""
        n_val, n_test = split_sizes(n, self.val_frac, self.test_frac)
        return [k for k, size, wanted in (("train", n - n_val - n_test, 1), ("val", n_val, self.val_frac),
                                          ("test", n_test, self.test_frac)) if wanted > 0 and size <= 0]


@dataclass
class ReconstructOptions(Block):
    """The autoencoder twin of a task (MSE reconstruction through a code layer)."""
    code_size: int = opt(2, gt=0, integer=True)   # bottleneck width (2, as in the continuation papers)
    # subtract the training mean from every split; auto: when model.init is pca or auto (the default),
    # resolved by contnet/engine/run.py resolve_auto (the closed-form PCA start assumes centred data)
    center: Any = opt("auto", choices=(True, False, "auto"))


def split_sizes(n: int, val_frac: float, test_frac: float) -> tuple[int, int]:
    """(val, test) example counts of `n` examples; train gets the rest."""
    return int(round(n * val_frac)), int(round(n * test_frac))


def split_indices(n: int, val_frac: float, test_frac: float, split_seed: int) -> dict[str, torch.Tensor]:
    """A fixed permutation (independent of the run seed) cut into train/val/test (fractions: the schema's
    rules, SplitOptions / ImageOptions)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    n_val, n_test = split_sizes(n, val_frac, test_frac)
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
