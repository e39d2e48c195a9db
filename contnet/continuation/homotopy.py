"""Homotopy activations σ_λ(v) = (1−λ)·v + λ·σ(v)  (NPACS orientation: λ=0 linear, λ=1 standard)."""
from __future__ import annotations

import torch
from torch import nn

from .state import LambdaRef, LambdaState

BASE_ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}


class HomotopyActivation(LambdaRef, nn.Module):
    def __init__(self, base: nn.Module, lam: LambdaState):
        super().__init__()
        self.base = base
        self._bind_lambda(lam)

    def forward(self, x):
        # one kernel for (1−λ)·x + λ·σ(x); lerp is exact at both ends (λ=1: σ(x), λ=0: x) and gives ∂/∂λ
        return torch.lerp(x, self.base(x), self.lam.to(x.dtype))


def make_activation(name: str, lam: LambdaState | None = None) -> nn.Module:
    """Plain activation, or its homotopy version reading `lam` when one is given."""
    if name not in BASE_ACTIVATIONS:
        from contnet.registry import ConfigError
        raise ConfigError(f"unknown activation '{name}'; choose one of: {', '.join(BASE_ACTIVATIONS)}")
    base = BASE_ACTIVATIONS[name]()
    if lam is None or name == "identity":
        return base
    return HomotopyActivation(base, lam)


class HomotopySkip(LambdaRef, nn.Module):
    """Skip-connection homotopy of a residual block: y_out = (1−λ)·act(y) + λ·act(y + residual).

    λ=0 drops the skip (a plain feed-forward block), λ=1 is the standard residual block exactly
    (the (1−λ) term is then an exact zero, so outputs and gradients equal act(y + residual)).
    Without a λ it is the standard block.
    """

    def __init__(self, act: nn.Module, lam: LambdaState | None = None):
        super().__init__()
        self.act = act
        if lam is not None:
            self._bind_lambda(lam)

    def forward(self, y, residual):
        if not hasattr(self, "_lam_ref"):
            return self.act(y + residual)
        plain, skipped = self.act(y), self.act(y + residual)
        if plain.dtype != skipped.dtype:       # mixed precision: lerp needs one dtype (the sum's promotion)
            plain = plain.to(skipped.dtype)
        return torch.lerp(plain, skipped, self.lam.to(skipped.dtype))
