"""Image classification as users expect it: per-channel normalization and on-device batched augmentation.

`task.normalize`: (x − mean_c) / std_c with the *training* split's per-channel statistics, for every split.
`task.augment`: each training batch gets a random crop after `augment_pad`-pixel zero padding (zero = the
channel mean once normalized) and a horizontal flip with probability ½ — the standard CIFAR recipe,
done as one gather on the batch's device, no per-sample Python.  The offsets and flips of an epoch are
drawn once from the epoch's generator (seed, epoch), so they are deterministic per seed and a resumed
run sees the same ones.  Evaluation never augments (it reads the split tensors directly).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from contnet.registry import ConfigError
from contnet.schema import Block, opt, typed
from .base import TensorTask, batch_starts, shard_slice


@dataclass
class AugmentOptions(Block):
    """The image-classification keys (contnet/tasks/images.py's classification tasks inherit them)."""
    group: ClassVar[str] = "task"
    normalize: bool = False      # per-channel (x − mean) / std with the training split's statistics, every split
    augment: bool = False        # training batches: random crop after zero padding + horizontal flip, on the device
    augment_pad: int = opt(4, ge=0, integer=True)   # padding of the random crop (pixels)
    augment_flip: bool = True    # with augment: horizontal flip with probability 1/2


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of N×C×H×W images, shaped 1×C×1×1."""
    dims = [0, 2, 3]
    return x.mean(dims, keepdim=True), x.std(dims, keepdim=True).clamp_min(1e-8)


def normalize_splits(splits: dict, x_train: torch.Tensor) -> dict:
    mean, std = channel_stats(x_train)
    return {k: ((x - mean) / std, *rest) for k, (x, *rest) in splits.items()}


def crop_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int) -> torch.Tensor:
    """x: B×C×H×W; dy, dx ∈ [0, 2·pad] crop offsets into the padded image; flip: B booleans."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = dy[:, None] + torch.arange(h, device=x.device)                      # B×H
    cols = torch.arange(w, device=x.device).expand(b, w)
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + dx[:, None]        # B×W
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


class AugmentedImageTask(TensorTask):
    """A TensorTask whose training batches are augmented (crop + flip); evaluation is unchanged."""

    def __init__(self, meta, data, pad: int = 4, flip: bool = True):
        super().__init__(meta, data)
        self.pad, self.flip = pad, flip

    def train_batches(self, batch_size, generator, device, shard=None, chunk: int = 16):
        """Augments `chunk` batches at a time (one crop/flip call per chunk: fewer kernel launches on a GPU);
        each example's crop and flip are the same whatever the chunking and the sharding (`shard`: this rank's
        slice of each global batch, the only examples gathered and augmented here)."""
        x, y = self.tensors("train", device)
        n = len(x)
        perm = torch.randperm(n, generator=generator)
        # one draw per example for the whole epoch (after the order): same numbers when resumed mid-epoch
        offsets = torch.randint(0, 2 * self.pad + 1, (2, n), generator=generator)
        flips = torch.rand(n, generator=generator) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool)
        draws = torch.stack([perm, offsets[0], offsets[1], flips.long()])
        draws = draws.pin_memory().to(x.device, non_blocking=True) if x.is_cuda else draws.to(x.device)
        perm, dy, dx, flips = draws[0], draws[1], draws[2], draws[3].bool()
        starts = batch_starts(n, batch_size)
        width = min(batch_size, n)                        # examples per global batch
        own = shard_slice(width, shard)
        per = own.stop - own.start                        # examples per batch on this rank
        for c in range(0, len(starts), chunk):
            group = starts[c:c + chunk]
            # this chunk's global batches as rows, this rank's columns: one gather on the device
            idx = perm[group[0]:group[-1] + width].view(len(group), width)[:, own].reshape(-1)
            xs = crop_flip(x[idx], dy[idx], dx[idx], flips[idx], self.pad)
            ys = y[idx]
            for k in range(len(group)):
                yield xs[k * per:(k + 1) * per], ys[k * per:(k + 1) * per]


def image_task(cfg, task: TensorTask) -> TensorTask:
    """Apply `task.normalize` / `task.augment` to an image classification TensorTask (`cfg`: an AugmentOptions,
    or a mapping of its keys; keys absent: off)."""
    cfg = typed(AugmentOptions, cfg)
    augment, normalize = cfg.augment, cfg.normalize
    if not (augment or normalize) or task.meta.objective != "classify":
        return task
    if len(task.meta.input_shape) != 3:
        raise ConfigError(f"task.augment/task.normalize need (C, H, W) images; task.flatten=true gives vectors "
                          f"{task.meta.input_shape}; set task.flatten=false or task.augment=false task.normalize=false")
    data = normalize_splits(task.data, task.data["train"][0]) if normalize else task.data
    if not augment:
        return TensorTask(task.meta, data)
    return AugmentedImageTask(task.meta, data, pad=cfg.augment_pad, flip=cfg.augment_flip)
