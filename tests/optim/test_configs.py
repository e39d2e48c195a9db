"""Typed optimizer and scheduler configs (issue 12): the library default is the CLI default, one NPACS node
serves cadam/crmsprop/continuation, the authors' values are named presets, and each rule lives on one field."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from omegaconf import OmegaConf

from contnet.continuation.npacs import NPACSOptions
from contnet.continuation.parc import ArclengthOptions
from contnet.continuation.state import get_lambda
from contnet.errors import ConfigError, fmt
from contnet.registry import OPTIMIZERS, SCHEDULERS
from tests.helpers.config import compose
from tests.helpers.nets import TinyNet, batches, train_mse

NPACS = ["cadam", "crmsprop", "continuation"]
# The authors' NPACS values (spec §2.5 Fashion-MNIST config, C1's code), as the YAML comment listed them.
AUTHORS_NPACS = dict(l_init=0.01, delta_l=0.008, delta_l_prev=0.02, delta_l_min=8e-4, delta_l_max=0.02, window=100,
                     adaptive_start=100, secant=True, ratio_mode="frozen", u_freq=10, norm_strict=0.05, spike=0.25,
                     grow=1.5, shrink=0.5, adaptive=True, reset_inner_state=False)
# C2's PARC (AE) values
AUTHORS_ARC = dict(delta_s=0.05, min_arc_len=0.008, max_arc_len=0.02, constraint="authors", sphere_radius_m=0.5)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_library_default_equals_the_composed_cli_default(name):
    cls = OPTIMIZERS.config(name)
    node = compose([f"optimizer={name}"]).optimizer
    assert OmegaConf.to_object(node) == cls()
    assert cls().name == name


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_scheduler_default_equals_the_composed_cli_default(name):
    assert OmegaConf.to_object(compose([f"scheduler={name}"]).scheduler) == SCHEDULERS.config(name)()


@pytest.mark.parametrize("name", NPACS)
def test_npacs_authors_preset_gives_the_spec_values_on_every_npacs_optimizer(name):
    cls = OPTIMIZERS.config(name)
    assert issubclass(cls, NPACSOptions)
    got = OmegaConf.to_object(compose([f"optimizer={name}", "optimizer/npacs=authors"]).optimizer)
    assert {k: getattr(got, k) for k in AUTHORS_NPACS} == AUTHORS_NPACS
    # the preset changes only the NPACS block: the inner optimizer's keys stay the option's defaults
    npacs_keys = {f.name for f in dataclasses.fields(NPACSOptions)}
    inner = {f.name for f in dataclasses.fields(cls)} - npacs_keys
    assert {k: getattr(got, k) for k in inner} == {k: getattr(cls(), k) for k in inner}


def test_npacs_yaml_does_not_repeat_the_block():
    from importlib import resources
    root = resources.files("contnet.conf") / "optimizer"
    for name in NPACS:
        text = (root / f"{name}.yaml").read_text()
        assert "npacs: default" in text and "delta_l" not in text


def test_arclength_authors_preset_gives_c2s_values():
    got = OmegaConf.to_object(compose(["optimizer=parc", "optimizer/arclength=authors"]).optimizer)
    assert isinstance(got, ArclengthOptions)
    assert {k: getattr(got, k) for k in AUTHORS_ARC} == AUTHORS_ARC


def test_the_preset_reaches_the_driver():
    """`optimizer/npacs=authors` composed and built: the driver runs with Δλ 0.008 from λ=0.01."""
    model = TinyNet()
    cfg = compose(["optimizer=cadam", "optimizer/npacs=authors"]).optimizer
    opt = OPTIMIZERS.get("cadam")(cfg, model)
    assert opt.driver.dl == 0.008 and get_lambda(model) == pytest.approx(0.01)
    train_mse(model, opt, batches(10))
    assert get_lambda(model) == pytest.approx(0.018)


@pytest.mark.parametrize("name,key,value,words", [
    ("cadam", "l_init", 1.5, "must be a number in [0, 1]"),
    ("crmsprop", "delta_l", 0.0, "must be a number > 0"),
    ("continuation", "ratio_mode", "exact", "must be one of intended, frozen"),
    ("continuation", "inner", "lbfgs", "must be one of adam, adamw, rmsprop, sgd"),
    ("parc", "lambda_init", -0.1, "must be a number in [0, 1]"),
    ("parc", "theta_scale", "big", "must be rms or a number > 0"),
    ("parc", "corrector_check", "early", "must be one of fixed, loss"),
    ("adam", "betas", [0.9, 1.0], "must be two numbers in [0, 1)"),
    ("sgd", "lr", 0.0, "must be a number > 0"),
    ("rmsprop", "alpha", 1.5, "must be a number in [0, 1]"),
])
def test_an_out_of_range_value_is_one_config_error(name, key, value, words):
    node = compose([f"optimizer={name}"]).optimizer
    node[key] = value
    with pytest.raises(ConfigError) as e:
        OPTIMIZERS.get(name)(node, TinyNet())
    msg = str(e.value)
    assert msg.startswith(f"optimizer.{key}=") and words in msg and "\n" not in msg


def test_cross_field_rules():
    with pytest.raises(ConfigError, match=r"^optimizer.delta_l_min=0.5: must be <= optimizer.delta_l_max=0.1$"):
        OPTIMIZERS.get("cadam")({"delta_l_min": 0.5}, TinyNet())
    with pytest.raises(ConfigError, match=r"^optimizer.min_arc_len=0.3: must be <= optimizer.max_arc_len=0.2$"):
        OPTIMIZERS.get("parc")({"min_arc_len": 0.3}, TinyNet())
    with pytest.raises(ConfigError, match=r"^optimizer.nesterov=true: needs optimizer.momentum > 0$"):
        OPTIMIZERS.get("sgd")({"nesterov": True, "momentum": 0.0}, TinyNet())


@pytest.mark.parametrize("name,key,value", [("step", "step_size", 0), ("cosine", "min_lr_ratio", 1.5),
                                            ("linear_warmup", "warmup_steps", -1), ("step", "gamma", 0.0)])
def test_scheduler_out_of_range_is_one_config_error(name, key, value):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ConfigError, match=rf"^scheduler.{key}={fmt(value)}: must be "):
        SCHEDULERS.get(name)({key: value}, opt, 100)


def test_schedules_keep_their_factors():
    """cosine and linear_warmup share the warm-up; the decay after it is each one's own."""
    def lrs(name, **over):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=1.0)
        sched = SCHEDULERS.get(name)(over, opt, 10)
        out = []
        for _ in range(10):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out
    assert lrs("linear_warmup", warmup_steps=2, min_lr_ratio=0.0)[:4] == pytest.approx([0.5, 1.0, 1.0, 0.875])
    cos = lrs("cosine", warmup_steps=0, min_lr_ratio=0.5)
    assert cos[0] == 1.0 and cos[5] == pytest.approx(0.5 + 0.5 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi / 2)).item()))
    assert lrs("step", step_size=3, gamma=0.5)[:7] == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25])


def test_parc_at_lambda_one_is_its_inner_optimizer():
    """lambda_init=1 leaves no path to walk: PARC is the bare inner optimizer from the first step, as NPACS
    with l_init=1 is (one rule for both: λ in [0, 1])."""
    m1, m2 = TinyNet(seed=5), TinyNet(seed=5)
    opt = OPTIMIZERS.get("parc")({"lambda_init": 1.0, "lr": 1e-2}, m1)
    assert not opt.driver.active and not m1.homotopy_lambda.value.requires_grad
    ref = torch.optim.Adam(m2.parameters(), lr=1e-2)
    data = batches(30)
    assert train_mse(m1, opt, data) == train_mse(m2, ref, data)
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))
    assert get_lambda(m1) == 1.0
