"""What every task gives the engine: metadata, batches, a loss and an evaluation.

Small datasets live in memory as tensors (`TensorTask`): one `randperm` per epoch and slicing, no
per-sample DataLoader cost.  A task that is not tensors (text generation) subclasses `Task` and
implements the same four methods.

Sharded collation (data parallelism): `train_batches(global_batch, gen, device, shard=(rank, world))` draws
the same epoch order on every rank and collates only rank r's positions [r·B, (r+1)·B) of each global
batch (B = global_batch // world), so each rank gathers, augments and pads 1/world of the examples.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterator, Mapping

import torch
import torch.nn.functional as F

OBJECTIVES = ("classify", "reconstruct", "generate")


@dataclass
class TaskMeta:
    name: str
    objective: str                     # classify | reconstruct | generate
    input_shape: tuple[int, ...]       # one example, e.g. (64,) or (1, 28, 28)
    output_dim: int                    # classes for classify, flattened input size for reconstruct
    code_size: int | None = None       # autoencoder bottleneck
    sizes: dict[str, int] = field(default_factory=dict)   # examples per split
    extra: dict[str, Any] = field(default_factory=dict)


class Task:
    meta: TaskMeta
    # merged into summary.json by the engine: what stands in for the real data, e.g. {"data": "synthetic",
    # "train_split": "valid", "scores": "approximate"} (contnet report and the final table show it)
    provenance: Mapping[str, str] = MappingProxyType({})

    def num_train(self) -> int:
        raise NotImplementedError

    def train_batches(self, batch_size: int, generator: torch.Generator, device,
                      shard: tuple[int, int] | None = None) -> Iterator[Any]:
        """One epoch of shuffled training batches of `batch_size` (the global batch), already on `device`;
        with `shard=(rank, world_size)` only this rank's contiguous slice of each (see `shard_slice`)."""
        raise NotImplementedError

    def loss(self, model, batch) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model, split: str, batch_size: int, device, final: bool = False) -> dict[str, float]:
        """Metrics for `split` without the split prefix ({'loss': .., 'acc': ..})."""
        raise NotImplementedError

    def splits(self) -> list[str]:
        return [s for s in ("train", "val", "test") if self.meta.sizes.get(s)]


def shard_slice(width: int, shard: tuple[int, int] | None) -> slice:
    """Rank r's positions in a global batch of `width` examples: [r·B, (r+1)·B) with B = width // world_size
    (the remainder of an uneven batch goes to no rank).  `shard=None`: the whole batch."""
    if shard is None:
        return slice(0, width)
    rank, world = shard
    if not 0 <= rank < world:
        raise ValueError(f"shard=(rank, world_size) needs 0 <= rank < world_size, got {shard}")
    per = width // world
    return slice(rank * per, (rank + 1) * per)


def batch_starts(n: int, batch_size: int) -> list[int]:
    """First position of each whole batch of an epoch of `n` examples (one short batch when n < batch_size)."""
    return list(range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size))


class TensorTask(Task):
    """x (and y for classification) tensors per split; objective classify or reconstruct."""

    def __init__(self, meta: TaskMeta, data: dict[str, tuple[torch.Tensor, ...]]):
        self.meta, self.data = meta, data
        self.meta.sizes = {k: len(v[0]) for k, v in data.items()}
        self._device_cache: dict[tuple[str, str], tuple[torch.Tensor, ...]] = {}

    def tensors(self, split: str, device=None) -> tuple[torch.Tensor, ...]:
        if device is None:
            return self.data[split]
        key = (split, str(device))
        if key not in self._device_cache:
            with torch.inference_mode(False):    # first use may be an evaluation: training needs normal tensors
                self._device_cache[key] = tuple(t.to(device) for t in self.data[split])
        return self._device_cache[key]

    def num_train(self) -> int:
        return len(self.data["train"][0])

    def train_batches(self, batch_size, generator, device, shard=None):
        ts = self.tensors("train", device)
        n = len(ts[0])
        perm = torch.randperm(n, generator=generator)     # pinned + non_blocking: no host sync on CUDA
        perm = perm.pin_memory().to(ts[0].device, non_blocking=True) if ts[0].is_cuda else perm.to(ts[0].device)
        for i in batch_starts(n, batch_size):
            idx = perm[i:i + batch_size]
            idx = idx[shard_slice(len(idx), shard)]
            yield tuple(t[idx] for t in ts)

    def _forward_loss(self, model, batch, reduction="mean"):
        x = batch[0]
        out = model(x)
        if self.meta.objective == "classify":
            return out, F.cross_entropy(out, batch[1], reduction=reduction)
        target = x.flatten(1)
        return out, F.mse_loss(out.flatten(1), target, reduction=reduction)

    def loss(self, model, batch):
        return self._forward_loss(model, batch)[1]

    @torch.no_grad()
    def evaluate(self, model, split, batch_size, device, final=False):
        ts = self.tensors(split, device)
        n = len(ts[0])
        total_loss, correct = 0.0, 0
        for i in range(0, n, max(batch_size, 1024)):
            batch = tuple(t[i:i + max(batch_size, 1024)] for t in ts)
            out, loss = self._forward_loss(model, batch, reduction="sum")
            total_loss += float(loss)
            if self.meta.objective == "classify":
                correct += int((out.argmax(-1) == batch[1]).sum())
        if self.meta.objective == "classify":
            return {"loss": total_loss / n, "acc": correct / n}
        return {"loss": total_loss / (n * self.meta.output_dim)}
