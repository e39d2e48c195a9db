"""Homotopy activations, λ at the ends of the path, skip homotopy and the PCA closed-form start
(continuation spec §5.2 items 1–4); the activation and skip as one torch.lerp: the same function as
(1−λ)·a + λ·b, exact at λ = 0 and 1, a gradient for λ (PARC), and mixed precision (bf16 autocast, mixed-dtype skip
inputs)."""
import pytest
import torch
from torch import nn

from contnet.continuation.homotopy import BASE_ACTIVATIONS, HomotopyActivation, HomotopySkip, make_activation
from contnet.continuation.pca import pca_init_autoencoder, sequential_svd_bases
from contnet.continuation.state import LambdaState, attach_lambda, get_lambda, set_lambda

ACTS = ["relu", "sigmoid", "tanh", "gelu"]


class Net(nn.Module):
    def __init__(self, layers, lam=None):
        super().__init__()
        self.body = nn.Sequential(*layers)
        if lam is not None:
            attach_lambda(self, lam)

    def forward(self, x):
        return self.body(x)


def hidden_stack(sizes, act, lam):
    """Linear layers with σ_λ between them; the last layer is linear."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(make_activation(act, lam))
    return layers


def homotopy_mlp(sizes, act, lam):
    return Net(hidden_stack(sizes, act, lam), lam)


def plain_mlp_like(model, act):
    """Same weights, plain activations."""
    return Net([BASE_ACTIVATIONS[act]() if isinstance(m, HomotopyActivation) else m for m in model.body])


@pytest.mark.parametrize("act", ACTS)
def test_activation_algebra(act):
    torch.manual_seed(0)
    v = torch.randn(200, dtype=torch.float64) * 3
    lam = LambdaState(0.0).double()
    h = make_activation(act, lam)
    base = BASE_ACTIVATIONS[act]()
    for value in (0.0, 0.3, 0.77, 1.0):
        lam.set(value)
        expected = (1 - value) * v + value * base(v)
        assert torch.allclose(h(v), expected, atol=1e-14, rtol=0)
    lam.set(0.0)
    assert torch.equal(h(v), v)
    lam.set(1.0)
    assert torch.equal(h(v), base(v))


@pytest.mark.parametrize("act", ACTS)
def test_dsigma_dlambda_gradcheck(act):
    torch.manual_seed(1)
    v = torch.randn(17, dtype=torch.float64)
    base = BASE_ACTIVATIONS[act]()

    def sigma_lam(l):
        lam = LambdaState(0.0).double()
        lam.value = l              # a λ that requires grad (PARC optimises it)
        return make_activation(act, lam)(v)

    l = torch.tensor(0.37, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(sigma_lam, (l,))
    (jac,) = torch.autograd.functional.jacobian(sigma_lam, (l,))
    assert torch.allclose(jac, base(v) - v, atol=1e-12)


def test_lambda_zero_is_linear():
    torch.manual_seed(2)
    lam = LambdaState(0.0)
    model = homotopy_mlp([6, 16, 16, 3], "tanh", lam).double()
    x1, x2 = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    f0 = model(torch.zeros(1, 6, dtype=torch.float64))
    a, b = 1.7, -0.6
    lhs = model(a * x1 + b * x2) - f0
    rhs = a * (model(x1) - f0) + b * (model(x2) - f0)
    assert torch.allclose(lhs, rhs, atol=1e-6)
    J1 = torch.autograd.functional.jacobian(model, x1[:1])
    J2 = torch.autograd.functional.jacobian(model, 5 * x2[:1])
    assert torch.allclose(J1, J2, atol=1e-12)
    lam.set(0.5)                                   # and it is not linear away from λ=0
    assert not torch.allclose(model(a * x1 + b * x2) - model(torch.zeros(1, 6, dtype=torch.float64)),
                              a * (model(x1) - f0) + b * (model(x2) - f0), atol=1e-6)


@pytest.mark.parametrize("act", ACTS)
def test_lambda_one_equals_standard_network_exactly(act):
    torch.manual_seed(3)
    lam = LambdaState(1.0)
    model = homotopy_mlp([8, 12, 12, 4], act, lam).double()
    plain = plain_mlp_like(model, act)
    x = torch.randn(9, 8, dtype=torch.float64)
    out_h, out_p = model(x), plain(x)
    assert torch.equal(out_h, out_p)
    gh = torch.autograd.grad(out_h.square().sum(), list(model.parameters()))
    gp = torch.autograd.grad(out_p.square().sum(), list(plain.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(gh, gp))


def test_lambda_is_one_buffer_in_state_dict():
    lam = LambdaState(0.25)
    model = homotopy_mlp([4, 5, 5, 2], "relu", lam)
    keys = [k for k in model.state_dict() if "homotopy_lambda" in k]
    assert keys == ["homotopy_lambda.value"]
    set_lambda(model, 0.5)
    assert get_lambda(model) == 0.5


def test_skip_homotopy_ends():
    torch.manual_seed(4)
    y, res = torch.randn(7, 5, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64)
    lam = LambdaState(1.0)
    skip = HomotopySkip(nn.ReLU(), lam)
    assert torch.equal(skip(y, res), torch.relu(y + res))
    lam.set(0.0)
    assert torch.equal(skip(y, res), torch.relu(y))
    lam.set(0.4)
    assert torch.allclose(skip(y, res), 0.6 * torch.relu(y) + 0.4 * torch.relu(y + res), atol=1e-15)
    assert torch.equal(HomotopySkip(nn.ReLU())(y, res), torch.relu(y + res))


def autoencoder(widths, act, lam):
    """d–…–k–…–d with σ_λ on hidden layers; code and output layers linear (spec §1.2)."""
    return Net(hidden_stack(widths, act, lam) + hidden_stack(list(reversed(widths)), act, lam), lam)


def test_pca_closed_form_fp64():
    torch.manual_seed(5)
    n, d, k = 600, 30, 3
    X = torch.randn(n, d, dtype=torch.float64) @ torch.randn(d, d, dtype=torch.float64) + 2.0
    lam = LambdaState(0.0)
    model = autoencoder([d, 20, 10, 6, k], "sigmoid", lam).double()
    mean = pca_init_autoencoder(model, X)
    Xc = X - X.mean(0)
    _, _, Vh = torch.linalg.svd(Xc, full_matrices=False)
    Vk = Vh[:k].T
    pca_rec = Xc @ Vk @ Vk.T + X.mean(0)
    with torch.no_grad():
        rec = model(X)
    rel = (rec - pca_rec).norm() / pca_rec.norm()
    assert rel < 1e-10
    mse_net = (rec - X).square().mean()
    mse_pca = (pca_rec - X).square().mean()
    assert torch.allclose(mse_net, mse_pca, rtol=1e-10)
    assert torch.allclose(mean, X.mean(0))
    # validation data are centred with the *training* mean
    Xv = torch.randn(50, d, dtype=torch.float64) + 2.0
    with torch.no_grad():
        assert torch.allclose(model(Xv), (Xv - X.mean(0)) @ Vk @ Vk.T + X.mean(0), atol=1e-9)
    # the closed form is specific to λ=0: the nonlinear network reconstructs differently
    lam.set(1.0)
    with torch.no_grad():
        assert (model(X) - pca_rec).norm() / pca_rec.norm() > 1e-3


def test_pca_bases_are_orthonormal_and_rejects_bad_shapes():
    torch.manual_seed(6)
    X = torch.randn(100, 12, dtype=torch.float64)
    for W in sequential_svd_bases(X, [8, 4]):
        assert torch.allclose(W.T @ W, torch.eye(W.shape[1], dtype=torch.float64), atol=1e-12)
    from contnet.registry import ConfigError
    with pytest.raises(ConfigError):
        pca_init_autoencoder(nn.Sequential(nn.Linear(12, 4), nn.Linear(4, 10)), X)


# --- one torch.lerp ------------------------------------------------------------------------------------------------

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
