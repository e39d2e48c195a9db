"""MLP, ResNet, weighted-skip and RNN equivalence; masking (spec sequential2d.md §4.6 5, 6, 9, 12)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contnet.models import seq2d as B
from contnet.models.seq2d import MaskedLinear

TOL = {torch.float64: dict(atol=0.0, rtol=0.0), torch.float32: dict(atol=1e-6, rtol=1e-6)}


def _sequential(dtype):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 7), nn.Tanh(),
                         nn.Linear(7, 4)).to(dtype)


def _copy_into_mlp(seq, dtype):
    """An independent seq2d mlp (own parameters, slot biases) loaded with seq's weights."""
    torch.manual_seed(123)
    model = B.mlp([6, 9, 7, 4], "relu").to(dtype)
    model.map.activations[2] = nn.Tanh()
    linears = [m for m in seq if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for l, lin in enumerate(linears, start=1):
            model.map.block(l, l - 1).weight.copy_(lin.weight)
            model.map.biases[l].copy_(lin.bias)
    return model, linears


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mlp_forward_gradients_and_one_adam_step_match_nn_sequential(dtype):
    seq = _sequential(dtype)
    model, linears = _copy_into_mlp(seq, dtype)
    x = torch.randn(16, 6, dtype=dtype)
    target = torch.randint(0, 4, (16,))
    opt_ref = torch.optim.Adam(seq.parameters(), lr=1e-2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    out_ref, out = seq(x), model(x)
    torch.testing.assert_close(out, out_ref, **TOL[dtype])
    F.cross_entropy(out_ref, target).backward()
    F.cross_entropy(out, target).backward()
    for l, lin in enumerate(linears, start=1):
        torch.testing.assert_close(model.map.block(l, l - 1).weight.grad, lin.weight.grad, **TOL[dtype])
        torch.testing.assert_close(model.map.biases[l].grad, lin.bias.grad, **TOL[dtype])
    opt_ref.step()
    opt.step()
    for l, lin in enumerate(linears, start=1):
        torch.testing.assert_close(model.map.block(l, l - 1).weight, lin.weight, **TOL[dtype])
        torch.testing.assert_close(model.map.biases[l], lin.bias, **TOL[dtype])
    torch.testing.assert_close(model(x), seq(x), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_from_sequential_shares_weights_and_matches(dtype):
    seq = _sequential(dtype)
    model = B.from_sequential(seq)
    assert {id(p) for p in model.parameters()} == {id(p) for p in seq.parameters()}
    assert model.n_trainable() == sum(p.numel() for p in seq.parameters())
    x = torch.randn(5, 6, dtype=dtype)
    torch.testing.assert_close(model(x), seq(x), **TOL[dtype])
    grad = torch.autograd.grad(model(x).square().sum(), seq[0].weight)[0]
    grad_ref = torch.autograd.grad(seq(x).square().sum(), seq[0].weight)[0]
    torch.testing.assert_close(grad, grad_ref, **TOL[dtype])
    with pytest.raises(ValueError, match="must start with nn.Linear"):
        B.from_sequential(nn.Sequential(nn.ReLU(), nn.Linear(2, 2)))


# ------------------------------------------------------------------------------- ResNet
class ResidualMLP(nn.Module):
    """The explicit loop: h = stem(x); h = skip(h) + W_b σ(W_a h); y = head(h)."""

    def __init__(self, d_in, width, depth, d_out, skip):
        super().__init__()
        self.stem, self.head = nn.Linear(d_in, width), nn.Linear(width, d_out)
        self.a = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.b = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.skip_kind = skip
        shape = {"identity": (0,), "scalar": (depth, 1), "diag": (depth, width),
                 "linear": (depth, width, width)}[skip]
        self.gains = nn.Parameter(torch.randn(shape))

    def forward(self, x):
        h = self.stem(x)
        for l in range(len(self.a)):
            g = self.b[l](torch.relu(self.a[l](h)))
            skip = {"identity": lambda: h, "scalar": lambda: self.gains[l] * h,
                    "diag": lambda: self.gains[l] * h, "linear": lambda: h @ self.gains[l].T}
            h = skip[self.skip_kind]() + g
        return self.head(h)


@pytest.mark.parametrize("skip", ["identity", "scalar", "diag", "linear"])
def test_resnet_and_weighted_skips_match_an_explicit_loop(skip):
    torch.manual_seed(0)
    depth, width = 3, 5
    ref = ResidualMLP(4, width, depth, 2, skip).double()
    model = B.resnet(4, width, depth, 2, skip=skip).double()
    step = model.map
    with torch.no_grad():
        step.block(1, 0).weight.copy_(ref.stem.weight)
        step.biases[1].copy_(ref.stem.bias)
        for l in range(depth):
            h_prev, u, h = 1 + 2 * l, 2 + 2 * l, 3 + 2 * l
            step.block(u, h_prev).weight.copy_(ref.a[l].weight)
            step.biases[u].copy_(ref.a[l].bias)
            step.block(h, u).weight.copy_(ref.b[l].weight)
            step.biases[h].copy_(ref.b[l].bias)
            if skip in ("scalar", "diag"):
                step.block(h, h_prev).gain.copy_(ref.gains[l])
            elif skip == "linear":
                step.block(h, h_prev).weight.copy_(ref.gains[l])
        n = len(step.out_sizes)
        step.block(n - 1, n - 2).weight.copy_(ref.head.weight)
        step.biases[n - 1].copy_(ref.head.bias)
    x = torch.randn(7, 4, dtype=torch.float64)
    torch.testing.assert_close(model(x), ref(x), atol=1e-12, rtol=0)
    model.schedule = "jacobi"
    torch.testing.assert_close(model(x), ref(x), atol=1e-12, rtol=0)


def test_weighted_skips_start_as_the_plain_resnet():
    torch.manual_seed(0)
    plain = B.resnet(4, 5, 2, 3, skip="identity")
    for skip in ("scalar", "diag", "linear"):
        torch.manual_seed(0)
        weighted = B.resnet(4, 5, 2, 3, skip=skip)
        x = torch.randn(3, 4)
        torch.testing.assert_close(weighted(x), plain(x))


def test_dense_skips_match_an_explicit_loop():
    torch.manual_seed(0)
    sizes = [4, 6, 5, 3]
    model = B.dense(sizes, "tanh", skip_init="row").double()
    step = model.map
    x = torch.randn(5, 4, dtype=torch.float64)
    z = [x]
    for i in range(1, len(sizes)):
        pre = step.biases[i] + sum(z[j] @ step.block(i, j).weight.T for j in range(i))
        z.append(torch.tanh(pre) if i < len(sizes) - 1 else pre)
    torch.testing.assert_close(model(x), z[-1], atol=1e-12, rtol=0)


def test_dense_zero_skips_start_as_the_mlp():
    torch.manual_seed(0)
    model = B.dense([4, 6, 5, 3], "relu")  # skip_init="zero"
    chain = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    with torch.no_grad():
        for l, lin in enumerate([chain[0], chain[2], chain[4]], start=1):
            lin.weight.copy_(model.map.block(l, l - 1).weight)
            lin.bias.copy_(model.map.biases[l])
    x = torch.randn(3, 4)
    torch.testing.assert_close(model(x), chain(x))
    model(x).sum().backward()
    assert model.map.block(3, 0).weight.grad.abs().sum() > 0  # the zero skips do learn


# ---------------------------------------------------------------------------------- RNN
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_from_rnn_matches_nn_rnn_over_sequences(nonlinearity, batch_first):
    torch.manual_seed(0)
    rnn = nn.RNN(3, 5, nonlinearity=nonlinearity, batch_first=batch_first).double()
    model = B.from_rnn(rnn)
    for length in (1, 4, 17):
        x = torch.randn((2, length, 3) if batch_first else (length, 2, 3), dtype=torch.float64)
        h0 = torch.randn(1, 2, 5, dtype=torch.float64)
        for init in (None, h0):
            out_ref, h_ref = rnn(x, init)
            out, state = model(x, None if init is None else [None, init[0]])
            torch.testing.assert_close(out, out_ref, atol=1e-12, rtol=0)
            torch.testing.assert_close(state[1], h_ref[0], atol=1e-12, rtol=0)


def test_from_rnn_rejects_stacked_rnns():
    with pytest.raises(ValueError, match="num_layers=1"):
        B.from_rnn(nn.RNN(3, 5, num_layers=2))


def test_iterated_rnn_runs_jacobi():
    model = B.iterated_rnn(4, 6, 3, num_iterations=4)
    assert not model.uses_topological()
    assert model(torch.randn(2, 4)).shape == (2, 3)


# ------------------------------------------------------------------------------ masking
def test_masked_block_counts_and_stays_masked_under_adamw():
    torch.manual_seed(0)
    mask = (torch.rand(6, 5) < 0.4).float()
    block = MaskedLinear(5, 6, mask, bias=True)
    assert block.n_trainable() == int(mask.sum()) + 6
    assert sum(p.numel() for p in block.parameters()) == 36  # stored, not trainable
    opt = torch.optim.AdamW(block.parameters(), lr=0.1, weight_decay=0.5)
    for _ in range(5):
        opt.zero_grad()
        block(torch.randn(8, 5)).square().sum().backward()
        assert torch.all(block.weight.grad[mask == 0] == 0)
        opt.step()
    assert torch.all(block.weight[mask == 0] == 0)
    assert torch.all(block.weight[mask == 1] != 0)


def test_masked_patterns_count_only_kept_entries():
    torch.manual_seed(0)
    model = B.dense([8, 16, 16, 4], density=0.25)
    kept = sum(int(m.mask.sum()) for m in model.modules() if isinstance(m, MaskedLinear))
    assert model.n_trainable() == kept + 16 + 16 + 4
    assert model.n_trainable() < sum(p.numel() for p in model.parameters())
    sparse = B.from_block_masks([8, 16, 4], [[0, 0, 0], [0.5, 0, 0], [0, 1, 0]])
    assert sparse.n_trainable() == 64 + 16 + 64 + 4


def test_rnn_builder_with_readout_is_an_elman_network_read_one_step_late():
    # Jacobi: y_t = W_hy h_{t-1} + b_y, since y reads the state before this step's h update
    torch.manual_seed(0)
    model = B.rnn(3, 5, 2).double()
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    out, state = model(x)
    step = model.map
    h = torch.zeros(2, 5, dtype=torch.float64)
    for t in range(4):
        y = h @ step.block(2, 1).weight.T + step.biases[2] if t else None
        if y is not None:
            torch.testing.assert_close(out[t], y, atol=1e-12, rtol=0)
        else:
            assert torch.equal(out[t], torch.zeros(2, 2, dtype=torch.float64))  # y not yet alive
        h = torch.tanh(x[t] @ step.block(1, 0).weight.T + h @ step.block(1, 1).weight.T + step.biases[1])
    torch.testing.assert_close(state[1], h, atol=1e-12, rtol=0)
