"""NPACS pieces and the C-Adam / C-RMSProp wrapper (continuation spec §5.2 items 5–9)."""
import copy
import io

import pytest
import torch
from torch import nn

from contnet.continuation.npacs import FLAG_DELAY, NPACSDriver, SecantPredictor, adapt_delta_lambda
from contnet.continuation.state import DelayedFlags, LambdaState, get_lambda
from contnet.registry import OPTIMIZERS, ConfigError
from tests.helpers.nets import npacs_cfg as cfg
from tests.helpers.nets import npacs_spec as spec
from tests.helpers.nets import train_mse as run
from tests.helpers.nets import ADAM, TinyNet, batches, params_equal

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- Δλ rule (§2.4) ----------------------------------------------------------------------------
RULE = spec(window=10)


def seq(prev, cur, T=10):
    return [prev] * T + [cur] * T


def test_rule_shrinking_norms_grow_step_capped():
    assert float(adapt_delta_lambda(0.008, seq(0.1, 0.09), RULE)) == pytest.approx(0.012)
    assert float(adapt_delta_lambda(0.016, seq(0.1, 0.09), RULE)) == pytest.approx(0.02)


def test_rule_growing_norms_shrink_step_floored():
    assert float(adapt_delta_lambda(0.008, seq(0.1, 0.11), RULE)) == pytest.approx(0.004)
    assert float(adapt_delta_lambda(0.001, seq(0.1, 0.11), RULE)) == pytest.approx(8e-4)


def test_rule_dead_band_and_spike():
    assert float(adapt_delta_lambda(0.008, seq(0.1, 0.102), RULE)) == 0.008
    spiky = seq(0.1, 0.09)
    spiky[-3] = 0.3                                       # one spike ≥ 0.25 in the last window
    spiky[:10] = [0.2] * 10                               # still a decrease of the mean
    assert float(adapt_delta_lambda(0.008, spiky, RULE)) == pytest.approx(0.008 * 1.5 * 0.5)
    assert float(adapt_delta_lambda(0.001, [0.3] * 20, RULE)) == pytest.approx(8e-4)


def test_rule_zero_guard_and_short_history():
    assert float(adapt_delta_lambda(0.008, seq(0.0, 0.1), RULE)) == pytest.approx(0.012)   # ρ=(0.1−0.2)/0.2
    assert float(adapt_delta_lambda(0.008, [0.1] * 10, RULE)) == 0.008                      # no previous window


def test_no_adaptation_before_adaptive_start():
    model = TinyNet()
    c = cfg("cadam", u_freq=10, window=5, adaptive_start=60, spike=0.0)   # spike=0: every due update halves
    opt = OPTIMIZERS.get("cadam")(c, model)
    seen = []
    for x, y in batches(90):
        run(model, opt, [(x, y)])
        seen.append((opt.driver.t, opt.driver.dl))
    assert all(dl == 0.008 for t, dl in seen if t < 70)
    assert seen[-1][1] < 0.008


# ---- secant predictor (§2.3) -------------------------------------------------------------------
def test_secant_exact_on_linear_path():
    torch.manual_seed(0)
    a, b = torch.randn(7, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    theta = [a.clone()]
    lams = [0.0, 0.013, 0.02, 0.0331, 0.034, 0.09]
    pred = SecantPredictor()
    pred.remember(theta, lams[0])
    theta[0].copy_(a + b * lams[1])                      # corrector lands on the path at λ1
    for k in range(1, len(lams) - 1):
        r = (lams[k + 1] - lams[k]) / (lams[k] - lams[k - 1])
        pred.predict(theta, r, lams[k])
        assert torch.allclose(theta[0], a + b * lams[k + 1], atol=1e-13, rtol=0)


def test_driver_secant_exact_on_linear_path_intended_and_frozen():
    torch.manual_seed(1)
    a, b = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    p = nn.Parameter(a.clone())
    lam = LambdaState(0.0).double()
    c = spec(adaptive=False, delta_l=0.01)
    drv = NPACSDriver(c, lam, [p])
    drv.update()                                          # natural first step: remember θ(0)
    for dl in (0.02, 0.005, 0.017, 0.3, 0.9):             # the last one is clipped at λ=1
        with torch.no_grad():
            p.copy_(a + b * lam.get())                    # an exact corrector
        drv.dl = dl
        drv.update()
        assert torch.allclose(p.detach(), a + b * lam.get(), atol=1e-12, rtol=0)
    assert lam.get() == 1.0 and drv.active               # the host learns of λ = 1 one update later (FLAG_DELAY)
    before = p.detach().clone()
    drv.update()                                          # that update is a no-op on the device, then finishes
    assert torch.equal(p.detach(), before) and lam.get() == 1.0
    assert not drv.active and drv.predictor.prev is None
    # frozen ratio (the authors' TF graph): the step is delta_l/delta_l_prev = 0.4 times the secant
    p2 = nn.Parameter(a.clone())
    drv2 = NPACSDriver(spec(adaptive=False, ratio_mode="frozen"), LambdaState(0.0).double(), [p2])
    drv2.update()
    with torch.no_grad():
        p2.copy_(a + b)
    drv2.update()
    assert torch.allclose(p2.detach(), a + b + 0.4 * b, atol=1e-14)


# ---- schedule invariants (§5.2 item 7) ---------------------------------------------------------
def test_schedule_invariants_and_plain_inner_after_lambda_one():
    model = TinyNet()
    opt = OPTIMIZERS.get("cadam")(cfg("cadam", delta_l=0.02, delta_l_min=0.01, delta_l_max=0.05, window=10, adaptive_start=20,
                                                spike=1e9), model)
    lams, data = [], batches(1100)
    hit = None
    for i, (x, y) in enumerate(data):
        run(model, opt, [(x, y)])
        lams.append(get_lambda(model))
        if hit is None and lams[-1] == 1.0:
            hit = i
            break
    assert hit is not None, "λ never reached 1"
    assert lams[0] == 0.0 or lams[0] < 0.05
    assert all(l2 >= l1 for l1, l2 in zip(lams, lams[1:]))
    assert max(lams) <= 1.0
    changes = [i + 1 for i in range(1, len(lams)) if lams[i] != lams[i - 1]]   # 1-based step numbers
    assert changes and all(s % 10 == 0 for s in changes)
    # from here on C-Adam must be the bare Adam started from the same state, bitwise
    twin = copy.deepcopy(model)
    bare = torch.optim.Adam(twin.parameters(), **{k: v for k, v in ADAM.items() if k != "betas"}, betas=(0.9, 0.999))
    bare.load_state_dict(copy.deepcopy(opt.inner.state_dict()))  # Adam shares step tensors otherwise
    rest = batches(40, seed=9)
    run(model, opt, rest)
    run(twin, bare, rest)
    assert params_equal(model, twin)
    assert get_lambda(model) == 1.0


# ---- transparency (§5.2 item 8) ----------------------------------------------------------------
@pytest.mark.parametrize("name,torch_cls,kw", [
    ("cadam", torch.optim.Adam, dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8)),
    ("crmsprop", torch.optim.RMSprop, dict(lr=1e-3, alpha=0.99, eps=1e-8)),
    ("continuation", torch.optim.Adam, dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8)),
])
def test_transparent_when_continuation_is_off(name, torch_cls, kw):
    m1, m2 = TinyNet(seed=4), TinyNet(seed=4)
    opt = OPTIMIZERS.get(name)(cfg(name, l_init=1.0), m1)
    ref = torch_cls(m2.parameters(), **kw)
    data = batches(50)
    assert run(m1, opt, data) == run(m2, ref, data)
    assert params_equal(m1, m2)


def test_lr_scheduler_drives_inner_lr():
    model = TinyNet()
    opt = OPTIMIZERS.get("cadam")(cfg("cadam"), model)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    run(model, opt, batches(2))
    sched.step(); sched.step()
    assert opt.inner.param_groups[0]["lr"] == pytest.approx(ADAM["lr"] * 0.5)


def test_needs_homotopy_model():
    with pytest.raises(ConfigError, match="model.homotopy=true"):
        OPTIMIZERS.get("cadam")(cfg("cadam"), TinyNet(homotopy=False))
    with pytest.raises(ConfigError):
        OPTIMIZERS.get("continuation")(cfg("continuation", inner="lbfgs"), TinyNet())


@pytest.mark.parametrize("inner", ["adam", "adamw", "rmsprop", "sgd"])
def test_general_wrapper_inner_choices(inner):
    model = TinyNet()
    opt = OPTIMIZERS.get("continuation")(cfg("continuation", inner=inner), model)
    assert type(opt.inner).__name__.lower() == inner
    assert all(torch.isfinite(torch.tensor(run(model, opt, batches(30)))))
    assert 0.0 < get_lambda(model) < 1.0


# ---- checkpoint round trip (§5.2 item 9) -------------------------------------------------------
def test_state_dict_round_trip_bitwise():
    over = dict(window=5, adaptive_start=0, u_freq=4)
    data = batches(80)
    model = TinyNet(seed=7)
    opt = OPTIMIZERS.get("cadam")(cfg("cadam", **over), model)
    run(model, opt, data[:37])
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    state_before = opt.state_dict()["continuation"]
    assert state_before["predictor"]["prev"] is not None and state_before["norms"]["count"] == 37
    run(model, opt, data[37:])

    buf.seek(0)
    ck = torch.load(buf, weights_only=False)
    resumed = TinyNet(seed=99)
    opt2 = OPTIMIZERS.get("cadam")(cfg("cadam", **over), resumed)
    resumed.load_state_dict(ck["model"])
    opt2.load_state_dict(ck["opt"])
    s2 = opt2.state_dict()["continuation"]
    for key in ("lambda", "dl", "dl_prev", "t", "updates"):
        assert s2[key] == state_before[key]
    assert torch.equal(s2["norms"]["buf"], state_before["norms"]["buf"])
    run(resumed, opt2, data[37:])
    assert params_equal(model, resumed)
    assert get_lambda(model) == get_lambda(resumed)
    assert opt.driver.dl == opt2.driver.dl


# ---- no host read: the Δλ rule on the device (issue 13 §1) -----------------------------------------
class NeverTold:
    """A host that never learns that λ reached 1: every λ-update from then on runs on the device as a no-op."""

    def post(self, flags, tag):
        return []


@pytest.mark.parametrize("late", [0, 3, None])
@pytest.mark.parametrize("ratio_mode", ["frozen", "intended"])
def test_when_the_host_learns_lambda_one_changes_nothing(late, ratio_mode):
    """Until the host learns that λ reached 1 (FLAG_DELAY = 1 update later on every device; here 0, 3 or never),
    each update is a device no-op (λ clamped at 1, Δλ kept, the secant step times 0): the run equals the default
    delay's bitwise."""
    over = dict(delta_l=0.05, delta_l_min=0.05, delta_l_max=0.1, window=5, adaptive_start=0, u_freq=5, spike=1e9,
                ratio_mode=ratio_mode)
    data = batches(150)
    runs = []
    for flags in (None, NeverTold() if late is None else DelayedFlags("cpu", 0, late)):
        model = TinyNet(seed=2)
        opt = OPTIMIZERS.get("cadam")(cfg("cadam", **over), model)
        if flags is not None:
            opt.driver.finished = flags
        losses = run(model, opt, data)
        runs.append((model, opt, losses))
    (m1, o1, l1), (m2, o2, l2) = runs
    assert o1.driver.finished.delay == FLAG_DELAY == 1
    assert get_lambda(m1) == get_lambda(m2) == 1.0 and not o1.driver.active
    assert l1 == l2 and params_equal(m1, m2)
    # never told: still running its (no-op) updates; intended reads λ at each secant update and stops there
    assert o2.driver.active == (late is None and ratio_mode == "frozen")
    assert o2.driver.dl == o1.driver.dl


def test_delta_lambda_rule_matches_the_host_rule_bitwise():
    """The device rule does the host rule's float operations in the same order (sequential sums)."""
    def host_rule(dl, norms, c):
        T = c.window
        cur, prev = norms[-T:], norms[-2 * T:-T]
        g_prev = sum(prev) / len(prev)
        g_prev = 0.2 if g_prev == 0 else g_prev
        rho = (sum(cur) / len(cur) - g_prev) / g_prev
        if rho < -c.norm_strict:
            dl = min(dl * c.grow, c.delta_l_max)
        elif rho >= c.norm_strict:
            dl = max(dl * c.shrink, c.delta_l_min)
        return max(dl * c.shrink, c.delta_l_min) if max(cur) >= c.spike else dl
    g = torch.Generator().manual_seed(0)
    c = spec(window=37, norm_strict=1e-3)
    for trial in range(200):
        norms = (torch.rand(74, generator=g) * 0.3).tolist()
        norms[37:] = [x * (1 + 2e-3 * (trial % 3 - 1)) for x in norms[:37]]   # ρ near ±ε and 0
        dl = 0.001 + 0.019 * torch.rand((), generator=g).item()
        assert adapt_delta_lambda(dl, norms, c).item() == host_rule(dl, norms, c)
