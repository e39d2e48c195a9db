"""PARC (continuation spec §5.2 item 10): invariants, checkpoint round trip, and a toy fold that
PARC walks around while natural continuation stalls."""
import io
import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from contnet.continuation.parc_math import corrector_omega, orthogonal_direction
from contnet.continuation.state import LambdaState, attach_lambda, get_lambda
from contnet.registry import OPTIMIZERS
from tests.helpers.nets import train_mse

SGD = dict(momentum=0.0, weight_decay=0.0, nesterov=False, inner="sgd")
# The spec-side values these tests were written for (the former PARCConfig() defaults); optimizer=parc's own
# defaults are budget-scaled (conf/optimizer/parc.yaml), C2's are optimizer/arclength=authors.
SPEC_ARC = dict(delta_s=0.05, min_arc_len=0.008, max_arc_len=0.02, corrector_steps=20, guess_steps=10)


def parc_cfg(**over):
    return OmegaConf.create({"name": "parc", **SPEC_ARC, **over})


pytestmark = pytest.mark.usefixtures("one_thread")


class Fold(nn.Module):
    """F(θ, λ) = θ³ − θ − (λ − ½): the solution curve λ = ½ + θ³ − θ is an S with turning points at
    θ = ∓1/√3 (λ ≈ 0.885 and 0.115).  Its only root at λ=0 is θ ≈ −1.19 and at λ=1 θ ≈ +1.19, so
    reaching the λ=1 solution continuously means passing both folds.  The loss is ½F²."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(-1.1915, dtype=torch.float64))
        attach_lambda(self, LambdaState(0.0).double())

    def forward(self):
        return self.theta ** 3 - self.theta - (self.homotopy_lambda.value - 0.5)


def fold_step(model, opt):
    def closure():
        opt.zero_grad(set_to_none=True)
        loss = 0.5 * model() ** 2
        loss.backward()
        return loss
    return opt.step(closure)


def test_parc_passes_the_fold_where_natural_continuation_stalls():
    model = Fold()
    c = parc_cfg(lr=0.2, delta_s=0.2, min_arc_len=0.05, max_arc_len=0.2,
                 corrector_steps=30, theta_scale=1.0, loss_tol=1e-4, **SGD)
    opt = OPTIMIZERS.get("parc")(c, model)
    lams, residuals, arcs = [], [], []
    for _ in range(5000):
        fold_step(model, opt)
        lams.append(get_lambda(model))
        arcs.append(opt.driver.ds)
        if opt.driver.active and opt.driver.phase == "arclength" and 0 < lams[-1] < 1:
            residuals.append(abs(opt.driver.residual()))
        if not opt.driver.active:
            break
    assert not opt.driver.active and lams[-1] == 1.0
    assert all(0.0 <= l <= 1.0 for l in lams)
    assert all(0.05 <= s <= 0.2 for s in arcs)
    assert max(residuals) < 1e-9                          # textbook constraint holds after every step
    near_fold = next(i for i, l in enumerate(lams) if l > 0.85)   # up to the first turning point …
    assert min(lams[near_fold:]) < 0.2                            # … then λ walks back down the S
    opt.param_groups[0]["lr"] = 0.05                      # below 2/curvature at the λ=1 root (the
    for _ in range(300):                                  # group is the inner one's); then plain SGD
        fold_step(model, opt)
    assert float(model.theta.detach()) > 1.0 and abs(float(model().detach())) < 1e-6

    npc = Fold()
    c_npc = OmegaConf.create(dict(name="continuation", lr=0.05, l_init=0.0, delta_l=0.01, secant=False,
                                  adaptive=False, **SGD))
    opt_npc = OPTIMIZERS.get("continuation")(c_npc, npc)
    for _ in range(1300):
        fold_step(npc, opt_npc)
    assert get_lambda(npc) == 1.0
    assert float(npc.theta.detach()) < 0.0 and abs(float(npc().detach())) > 0.1   # stuck at the fold


class Small(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        lam = LambdaState(1.0)
        from contnet.continuation.homotopy import make_activation
        self.net = nn.Sequential(nn.Linear(4, 12), make_activation("tanh", lam), nn.Linear(12, 2))
        attach_lambda(self, lam)

    def forward(self, x):
        return self.net(x)


small_run = train_mse


def data(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 4, generator=g), torch.randn(16, 2, generator=g)) for _ in range(n)]


ADAM = dict(lr=1e-2, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0, inner="adam")


def test_authors_predictor_length_and_penalty_reference():
    model = Small()
    c = parc_cfg(constraint="authors", delta_s=0.03, min_arc_len=0.01,
                 max_arc_len=0.05, corrector_steps=6, **ADAM)
    opt = OPTIMIZERS.get("parc")(c, model)
    drv = opt.driver
    checked = 0
    for batch in data(60):
        k_before = drv.k
        small_run(model, opt, [batch])
        if drv.active and drv.k > k_before and drv.phase == "arclength":   # a predictor just ran
            params = list(model.parameters())
            step = torch.cat([(p.detach() - r).flatten() for p, r in zip(params, drv.state.theta_ref)])
            assert math.isclose(float(step.detach().norm()), drv.ds, rel_tol=1e-5)           # ‖v_θ‖ = Δs
            v = torch.cat([t.flatten() for t in drv.state.tangent])
            # z_pred = z_k + v, so N(z_pred) = ⟨v, v⟩ − Δs; with v_θ of length Δs: Δs² + v_λ² − Δs
            t_lam = float(drv.state.t_lam)
            n_pred = float(v @ step) + t_lam ** 2 - drv.ds
            assert math.isclose(n_pred, drv.ds ** 2 + t_lam ** 2 - drv.ds, rel_tol=1e-6)
            checked += 1
    assert checked >= 3


def test_orthogonal_perturbation_and_omega_rule():
    g = torch.Generator().manual_seed(0)
    t = [torch.randn(5, 3, generator=g), torch.randn(7, generator=g)]
    t_lam, kappa = 0.3, 0.2
    norm = math.sqrt(kappa ** 2 * sum(float((x * x).sum()) for x in t) + t_lam ** 2)
    t, t_lam = [x / norm for x in t], t_lam / norm
    d, d_lam = orthogonal_direction(t, t_lam, kappa, g)
    dot = kappa ** 2 * sum(float((a * b).sum()) for a, b in zip(d, t)) + d_lam * t_lam
    length = kappa ** 2 * sum(float((a * a).sum()) for a in d) + d_lam ** 2
    assert abs(dot) < 1e-6 and math.isclose(length, 1.0, rel_tol=1e-5)
    assert corrector_omega(2, 10) == 6.0 and corrector_omega(20, 10) == 0.5 and corrector_omega(10_000, 10) == 0.05


@pytest.mark.parametrize("check", ["fixed", "loss"])
def test_parc_reaches_one_then_is_the_inner_optimizer_and_round_trips(check):
    c = parc_cfg(delta_s=0.1, min_arc_len=0.05, max_arc_len=0.2, corrector_steps=5,
                 sphere_radius_m=0.5, corrector_check=check, corrector_min_steps=2, ma_window=1,
                 **ADAM)
    model = Small(seed=3)
    opt = OPTIMIZERS.get("parc")(c, model)
    batches = data(200)
    small_run(model, opt, batches[:23])
    assert opt.driver.active and 0.0 < get_lambda(model) < 1.0
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    small_run(model, opt, batches[23:])
    assert not opt.driver.active and get_lambda(model) == 1.0
    assert not model.homotopy_lambda.value.requires_grad

    buf.seek(0)
    ck = torch.load(buf, weights_only=False)
    twin = Small(seed=8)
    opt2 = OPTIMIZERS.get("parc")(c, twin)
    twin.load_state_dict(ck["model"])
    opt2.load_state_dict(ck["opt"])
    small_run(twin, opt2, batches[23:])
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))
    assert opt.driver.k == opt2.driver.k and opt.driver.ds == opt2.driver.ds


def test_config_rejects_unknown_constraint_and_corrector_check():
    from contnet.registry import ConfigError
    with pytest.raises(ConfigError):
        OPTIMIZERS.get("parc")(parc_cfg(constraint="exact"), Small())
    with pytest.raises(ConfigError, match="corrector_check"):
        OPTIMIZERS.get("parc")(parc_cfg(corrector_check="early"), Small())


def corrector_lengths(check):
    """Iterations of each finished corrector (j just before it ended) on the Small regression."""
    c = parc_cfg(delta_s=0.1, min_arc_len=0.05, max_arc_len=0.2, corrector_steps=8,
                 corrector_min_steps=2, ma_window=1, loss_tol=0.5, corrector_check=check, **ADAM)
    model = Small(seed=3)
    opt = OPTIMIZERS.get("parc")(c, model)
    lengths = []
    for batch in data(80):
        j, k = opt.driver.j, opt.driver.k
        small_run(model, opt, [batch])
        if opt.driver.k > k:
            lengths.append(j + 1)
        if not opt.driver.active:
            break
    return lengths


def test_fixed_corrector_runs_corrector_steps_and_loss_check_can_end_earlier():
    fixed, loss = corrector_lengths("fixed"), corrector_lengths("loss")
    assert fixed and set(fixed) == {8}
    assert loss and min(loss) < 8 and all(2 <= j <= 8 for j in loss)


def test_step_keeps_lambda_and_its_gradient_on_the_device():
    """No conversion inside a corrector iteration: λ, ∂L/∂λ, the projection and the residual are tensors."""
    from contnet.engine.hostsync import count_host_syncs
    c = parc_cfg(delta_s=0.1, min_arc_len=0.05, max_arc_len=0.2, corrector_steps=4,
                 corrector_check="fixed", **ADAM)
    model = Small(seed=3)
    opt = OPTIMIZERS.get("parc")(c, model)
    batches = data(12)
    small_run(model, opt, batches[:5])                  # past the natural corrector: arclength phase
    assert opt.driver.phase == "arclength" and opt.driver.j == 1
    with count_host_syncs() as counter:
        small_run(model, opt, batches[5:7])             # iterations j = 2, 3 of a 4-step corrector
        r = opt.driver.residual()
    assert counter.total == 0 and isinstance(r, torch.Tensor) and abs(float(r)) < 1e-5
    with count_host_syncs() as counter:
        small_run(model, opt, batches[7:8])             # j = 4 ends it: the finish test runs on the device too
    assert counter.total == 0 and opt.driver.j == 0


def run_with_delay(c, batches, delay):
    """Losses, weights and the host's finish step of the Small regression with PARC's flags read `delay` steps late."""
    from contnet.continuation.parc import PARCDriver
    model = Small(seed=3)
    opt = OPTIMIZERS.get("parc")(c, model)
    drv = opt.driver
    opt.driver = PARCDriver(drv.cfg, model.homotopy_lambda, drv.params, lr=c.lr, flag_delay=delay)
    losses, host_finish = [], None
    for i, batch in enumerate(batches, 1):
        losses += small_run(model, opt, [batch])
        if host_finish is None and not opt.driver.active:
            host_finish = i
    return losses, [p.detach().clone() for p in model.parameters()], host_finish, opt.driver


@pytest.mark.parametrize("arc", [dict(constraint="textbook"), dict(constraint="authors", lagrange_mu=0.1),
                                 dict(constraint="textbook", sphere_radius_m=0.5, max_continuation_steps=6),
                                 dict(constraint="textbook", corrector_check="fixed")],
                         ids=["textbook", "authors", "sphere-maxk", "fixed"])
def test_the_flag_delay_changes_no_number(arc):
    """The host reads PARC's flags (corrector ended, finished) a fixed number of steps late, the same on every
    device; the end-of-corrector work runs masked wherever the host cannot rule an end out, and after λ reaches 1
    on the device every PARC update is a no-op until the host learns it.  Every delay gives, bit for bit, the run
    of a host that knew at once (delay 0), through λ = 1 and beyond (the inner optimizer), and the host learns
    of the finish exactly `delay` steps later (sphere_radius_m > 0: at most the shortest corrector later)."""
    c = parc_cfg(delta_s=0.1, min_arc_len=0.05, max_arc_len=0.2, corrector_steps=6, corrector_min_steps=2,
                 ma_window=2, loss_tol=0.05, **arc, **ADAM)
    batches = data(160)
    losses, weights, finish, drv = run_with_delay(c, batches, 0)
    assert finish is not None and finish < 150 and drv.k >= 3 and get_lambda(drv.lam) == 1.0
    for delay in (1, 2, 5, 8):
        got, got_weights, got_finish, got_drv = run_with_delay(c, batches, delay)
        assert got == losses and all(torch.equal(p, q) for p, q in zip(weights, got_weights)), delay
        assert got_finish == finish + got_drv.delay and got_drv.k == drv.k, delay
        assert got_drv.delay == (min(delay, 3) if "sphere_radius_m" in arc else delay)


def test_the_end_work_runs_only_where_an_end_cannot_be_ruled_out(monkeypatch):
    """The host skips the masked end-of-corrector work where no corrector can end: with delay 0 exactly at the ends;
    with corrector_check=fixed (every corrector has corrector_steps iterations) at the ends whatever the delay."""
    from contnet.continuation import parc_math
    calls = []
    real = parc_math.end_corrector
    monkeypatch.setattr(parc_math, "end_corrector", lambda *a, **k: calls.append(1) or real(*a, **k))
    for check, delay in (("loss", 0), ("fixed", 0), ("fixed", 8)):
        calls.clear()
        c = parc_cfg(delta_s=0.1, min_arc_len=0.05, max_arc_len=0.2, corrector_steps=6, corrector_min_steps=2,
                     ma_window=2, loss_tol=0.05, corrector_check=check, **ADAM)
        *_, drv = run_with_delay(c, data(30), delay)
        assert drv.active and len(calls) == drv.k >= 3, (check, delay)


def test_paper_arms_keep_the_authors_early_stop():
    from tests.helpers.config import compose
    for arm in ("parc_mnist_ae_parc", "parc_mnist_parc"):
        cfg = compose(["experiment=parc_paper", f"experiment/arm={arm}"])
        assert cfg.optimizer.corrector_check == "loss" and cfg.optimizer.corrector_steps == 300
    assert compose(["optimizer=parc"]).optimizer.corrector_check == "loss"
