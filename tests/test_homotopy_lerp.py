"""The homotopy activation and skip as one torch.lerp: the same function as (1−λ)·a + λ·b, exact at λ = 0 and 1,
a gradient for λ (PARC), and mixed precision (bf16 autocast, mixed-dtype skip inputs)."""
from __future__ import annotations

import pytest
import torch

from contnet.continuation.homotopy import HomotopySkip, make_activation
from contnet.continuation.state import LambdaState


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_lerp_activation_is_the_convex_combination_and_exact_at_the_ends(lam):
    x = torch.randn(64, 16)
    act = make_activation("sigmoid", LambdaState(lam))
    out = act(x)
    torch.testing.assert_close(out, (1 - lam) * x + lam * torch.sigmoid(x))
    if lam == 0.0:
        assert torch.equal(out, x)
    if lam == 1.0:
        assert torch.equal(out, torch.sigmoid(x))
        skip = HomotopySkip(torch.nn.ReLU(), LambdaState(1.0))
        y, r = torch.randn(8, 4), torch.randn(8, 4)
        assert torch.equal(skip(y, r), torch.relu(y + r))


def test_lambda_gets_its_gradient_under_bf16_autocast():
    state = LambdaState(0.4)
    state.value.requires_grad_(True)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), make_activation("tanh", state), torch.nn.Linear(8, 2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(torch.randn(16, 8)).float().square().mean()
    loss.backward()
    assert state.value.grad is not None and torch.isfinite(state.value.grad) and state.value.grad != 0


def test_skip_accepts_mixed_dtypes():
    skip = HomotopySkip(torch.nn.ReLU(), LambdaState(0.5))
    y, r = torch.randn(5, dtype=torch.bfloat16), torch.randn(5)
    out = skip(y, r)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, 0.5 * torch.relu(y.float()) + 0.5 * torch.relu(y.float() + r))
