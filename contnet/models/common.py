"""Helpers shared by the model builders: λ creation, sizes from the task, weight init."""
from __future__ import annotations

import math

from torch import nn

from contnet.continuation.state import LambdaState, attach_lambda
from contnet.registry import ConfigError


def new_lambda(cfg) -> LambdaState | None:
    """One λ per model when the (already resolved) `model.homotopy` is true; λ=1 = standard network."""
    homotopy = cfg.get("homotopy", False)
    if homotopy == "auto":        # the runner resolves auto from the optimizer; called directly: standard network
        homotopy = False
    return LambdaState(1.0) if bool(homotopy) else None


def finish(model: nn.Module, lam: LambdaState | None) -> nn.Module:
    if lam is not None:
        attach_lambda(model, lam)
    return model


def in_features(task) -> int:
    return math.prod(task.meta.input_shape)


def hidden_widths(cfg) -> list[int]:
    """`model.widths` (explicit list) wins; otherwise `depth` copies of `width`."""
    widths = cfg.get("widths")
    widths = list(widths) if widths else [int(cfg.width)] * int(cfg.depth)
    if any(int(w) <= 0 for w in widths):
        raise ConfigError(f"model widths {widths} must all be positive integers")
    return [int(w) for w in widths]


def init_weights(model: nn.Module, scheme: str) -> None:
    """torch defaults, or Glorot-uniform / orthogonal (the continuation papers' choices)."""
    if scheme in ("default", "pca"):
        return
    fn = {"xavier": nn.init.xavier_uniform_, "orthogonal": nn.init.orthogonal_}.get(scheme)
    if fn is None:
        raise ConfigError(f"model.init='{scheme}' is unknown; choose default, xavier, orthogonal or pca")
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fn(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) degrees of freedom, each tensor once (tied weights count once).

    A submodule may define `n_trainable()` to count its own parameters (masked Sequential2D blocks
    exclude their masked-out entries); everything else counts `numel()` of parameters that require grad.
    """
    seen: set[int] = set()
    trainable = 0
    for m in model.modules():
        if m is model or not hasattr(m, "n_trainable") or getattr(m, "counts_children", False):
            continue
        params = list(m.parameters())
        if any(id(p) in seen for p in params):
            continue
        seen.update(id(p) for p in params)
        trainable += int(m.n_trainable())
    total = 0
    for p in {id(p): p for p in model.parameters()}.values():
        total += p.numel()
        if id(p) not in seen:
            trainable += p.numel() if p.requires_grad else 0
    return trainable, total
