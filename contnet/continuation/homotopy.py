"""Homotopy activations σ_λ(v) = (1−λ)·v + λ·σ(v)  (NPACS orientation: λ=0 linear, λ=1 standard)."""
from __future__ import annotations

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
        lam = self.lam
        return (1 - lam) * x + lam * self.base(x)


def make_activation(name: str, lam: LambdaState | None = None) -> nn.Module:
    """Plain activation, or its homotopy version reading `lam` when one is given."""
    if name not in BASE_ACTIVATIONS:
        from contnet.registry import ConfigError
        raise ConfigError(f"unknown activation '{name}'; choose one of: {', '.join(BASE_ACTIVATIONS)}")
    base = BASE_ACTIVATIONS[name]()
    if lam is None or name == "identity":
        return base
    return HomotopyActivation(base, lam)
