"""Block types for Sequential2D cells.

A block is any `nn.Module` mapping `(..., in_features) -> (..., out_features)`.  When it carries
`in_features` / `out_features` attributes, `Sequential2D` checks them against the slot sizes.
Three kinds get special treatment in `Sequential2D` (see `block_kind`):

- `Identity`: a copy, added without a matmul;
- linear blocks (`nn.Linear`, `MaskedLinear`): fused per target row into one matmul;
- everything else (`Scale`, composites, nested `Sequential2D`) is simply called.

Trainable-parameter protocol: a block may define `n_trainable() -> int`; `MaskedLinear` does, so
that masked-out entries are not counted as degrees of freedom.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

IDENTITY, LINEAR, MODULE = "identity", "linear", "module"


class Identity(nn.Module):
    """A sized identity cell (in_features == out_features), the I of the paper's block matrices."""

    def __init__(self, features: int):
        super().__init__()
        self.in_features = self.out_features = int(features)

    def forward(self, x):
        return x

    def extra_repr(self) -> str:
        return f"features={self.in_features}"


class Scale(nn.Module):
    """Elementwise learnable gain: a scalar (`diagonal=False`) or a vector diag(a) (`diagonal=True`).

    Used as a weighted skip connection in place of ResNet's fixed I (spec §1.3, §5-A1).
    """

    def __init__(self, features: int, diagonal: bool = True, init: float = 1.0):
        super().__init__()
        self.in_features = self.out_features = int(features)
        self.gain = nn.Parameter(torch.full((features if diagonal else 1,), float(init)))

    def forward(self, x):
        return x * self.gain

    def extra_repr(self) -> str:
        return f"features={self.in_features}, diagonal={self.gain.numel() > 1}"


class MaskedLinear(nn.Module):
    """Linear map whose weight is `weight * mask` with a fixed 0/1 mask (a buffer).

    Masked entries are stored as exact zeros and get zero gradient (the product masks it), so
    Adam/AdamW and decoupled weight decay keep them at zero.  `n_trainable()` counts nnz(mask)
    (+ bias), not the dense `weight.numel()`: the spec's "trainable degrees of freedom" (§4.5).
    """

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor, bias: bool = False,
                 fan_in: int | None = None):
        super().__init__()
        if tuple(mask.shape) != (out_features, in_features):
            raise ValueError(f"MaskedLinear: mask shape {tuple(mask.shape)} != (out, in) = "
                             f"({out_features}, {in_features})")
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("mask", (mask != 0).to(torch.get_default_dtype()))
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters(fan_in)

    @torch.no_grad()
    def reset_parameters(self, fan_in: int | None = None) -> None:
        # Fan-in = kept entries per row on average, so a sparse row is not under-scaled.
        fan_in = fan_in or max(1, round(float(self.mask.sum()) / max(1, self.out_features)))
        bound = 1.0 / math.sqrt(fan_in)
        self.weight.uniform_(-bound, bound).mul_(self.mask)
        if self.bias is not None:
            self.bias.uniform_(-bound, bound)

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.mask.to(self.weight.dtype)

    def forward(self, x):
        return F.linear(x, self.effective_weight(), self.bias)

    def n_trainable(self) -> int:
        n = int(self.mask.count_nonzero()) if self.weight.requires_grad else 0
        if self.bias is not None and self.bias.requires_grad:
            n += self.bias.numel()
        return n

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"density={float(self.mask.mean()):.3g}, bias={self.bias is not None}")


def random_mask(out_features: int, in_features: int, density: float,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """A 0/1 mask with exactly round(density * size) ones (random positions), at least one.

    Always drawn on the CPU (a structural constant, like the layer sizes): under `torch.device("meta")`
    (`contnet params`) the mask keeps its values, so the trainable count of a masked block stays exact."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    size = out_features * in_features
    keep = max(1, round(density * size))
    flat = torch.zeros(size, device="cpu")
    flat[torch.randperm(size, generator=generator, device="cpu")[:keep]] = 1.0
    return flat.view(out_features, in_features)


def block_kind(block: nn.Module) -> str:
    if isinstance(block, (Identity, nn.Identity)):
        return IDENTITY
    if isinstance(block, (nn.Linear, MaskedLinear)):
        return LINEAR
    return MODULE


def linear_parts(block: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight (out, in), bias or None) of a linear block, as used in its forward."""
    if isinstance(block, MaskedLinear):
        return block.effective_weight(), block.bias
    return block.weight, block.bias


def block_features(block: nn.Module) -> tuple[int | None, int | None]:
    return getattr(block, "in_features", None), getattr(block, "out_features", None)
