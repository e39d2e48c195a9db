"""ResNet under homotopy: λ=1 is exactly the standard residual network, λ=0 drops the skips."""
from __future__ import annotations

import torch
from omegaconf import OmegaConf

from contnet.continuation.state import set_lambda
from contnet.registry import MODELS
from contnet.tasks.base import TaskMeta, TensorTask


def _pair(variant, shape):
    task = TensorTask(TaskMeta("fake", "classify", shape, 5), {"train": (torch.rand(3, *shape), torch.zeros(3).long())})
    base = {"name": "resnet", "variant": variant, "depth": 8, "width_mult": 1, "width": 6, "blocks": 2,
            "activation": "tanh", "skip_homotopy": True}
    torch.manual_seed(0)
    plain = MODELS.get("resnet")(OmegaConf.create({**base, "homotopy": False}), task).double()
    torch.manual_seed(0)
    homo = MODELS.get("resnet")(OmegaConf.create({**base, "homotopy": True}), task).double()
    return plain, homo, torch.rand(3, *shape, dtype=torch.float64)


def test_lambda_one_is_the_standard_resnet_exactly():
    for variant, shape in (("fc", (7,)), ("cifar", (2, 8, 8))):
        plain, homo, x = _pair(variant, shape)
        plain.eval(), homo.eval()
        set_lambda(homo, 1.0)
        out_p, out_h = plain(x), homo(x)
        assert torch.equal(out_p, out_h)
        out_p.sum().backward()
        out_h.sum().backward()
        for (n, p), (_, q) in zip(plain.named_parameters(), homo.named_parameters()):
            assert torch.equal(p.grad, q.grad), n


def test_lambda_zero_fc_resnet_is_linear_without_skips():
    plain, homo, x = _pair("fc", (7,))
    set_lambda(homo, 0.0)
    # λ=0: activations are identities and blocks drop the skip, so the net is an affine map
    f = homo
    a, b = x[:1], x[1:2]
    zero = torch.zeros_like(a)
    lhs = f(2 * a + 3 * b) - f(zero)
    rhs = 2 * (f(a) - f(zero)) + 3 * (f(b) - f(zero))
    assert torch.allclose(lhs, rhs, atol=1e-10)
    # and it differs from the same affine net *with* skips (the skip homotopy is active)
    blk = homo.blocks[0]
    h = torch.rand(2, 6, dtype=torch.float64)
    assert torch.allclose(blk(h), blk.fc2(blk.fc1(h)))
