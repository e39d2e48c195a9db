"""A tiny homotopy network, its batches and the optimizer configs the continuation and optimizer tests train it
with (continuation spec §5.2); `train_mse` steps an optimizer through the closure contract."""
from __future__ import annotations

import torch
from omegaconf import OmegaConf
from torch import nn

from contnet.continuation.homotopy import make_activation
from contnet.continuation.npacs import NPACSOptions
from contnet.continuation.state import LambdaState, attach_lambda

ADAM = dict(lr=1e-2, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0)
RMS = dict(lr=1e-3, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0)
# The spec's readings these tests were written for (the former NPACSConfig() defaults): Δλ 0.008 in
# [8e-4, 0.02], T = 100, the secant predictor with the intended ratio (A4).  optimizer=cadam's own defaults are
# budget-scaled (NPACSOptions), the authors' are optimizer/npacs=authors (tests/optim/test_options.py).
SPEC = dict(l_init=0.0, delta_l=0.008, delta_l_prev=0.02, delta_l_min=8e-4, delta_l_max=0.02, window=100,
            adaptive_start=100, secant=True, ratio_mode="intended")


def npacs_cfg(name: str, **over):
    """The node of optimizer `name` (cadam | crmsprop | continuation) with the spec's NPACS readings."""
    base = {"cadam": ADAM, "crmsprop": RMS, "continuation": {**RMS, **ADAM, "inner": "adam"}}[name]
    return OmegaConf.create({"name": name, **SPEC, **base, **over})


def npacs_spec(**over) -> NPACSOptions:
    return NPACSOptions(**{**SPEC, **over})


class TinyNet(nn.Module):
    """5 → 16 → 16 → 3 with homotopy tanh activations sharing one λ (none when homotopy=False)."""

    def __init__(self, homotopy=True, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        lam = LambdaState(1.0) if homotopy else None
        self.net = nn.Sequential(nn.Linear(5, 16), make_activation("tanh", lam), nn.Linear(16, 16),
                                 make_activation("tanh", lam), nn.Linear(16, 3))
        if lam is not None:
            attach_lambda(self, lam)

    def forward(self, x):
        return self.net(x)


def batches(n, seed=123):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(32, 5, generator=g), torch.randn(32, 3, generator=g)) for _ in range(n)]


def params_equal(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def train_mse(model, opt, data) -> list[float]:
    """One optimizer step per (x, y) batch through the closure contract; the losses it returned."""
    import torch.nn.functional as F
    losses = []
    for x, y in data:
        def closure():
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(x), y)
            loss.backward()
            return loss
        losses.append(float(opt.step(closure).detach()))
    return losses
