"""model.init=auto: the closed-form λ=0 (PCA) start exactly when a continuation optimizer trains a
reconstruction task on an autoencoder whose widths allow it; the standard init otherwise."""
from __future__ import annotations

import logging

import pytest
import torch
from omegaconf import OmegaConf

from contnet.engine.run import resolve_auto
from contnet.models.common import autoencoder_widths
from contnet.registry import MODELS, TASKS
from tests.helpers.config import compose


def build(overrides: list[str]):
    """The runner's path: compose, resolve the auto switches, build task and model from seed 0."""
    cfg = compose(overrides)
    resolve_auto(cfg)
    torch.manual_seed(0)
    task = TASKS.get(cfg.task.name)(cfg.task, 0)
    return cfg, task, MODELS.get(cfg.model.name)(cfg.model, task)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("optimizer", ["cadam", "crmsprop", "parc", "continuation"])
def test_continuation_on_default_autoencoder_gets_the_closed_form_start(optimizer, caplog):
    with caplog.at_level(logging.INFO, logger="contnet"):
        cfg, task, model = build([f"optimizer={optimizer}", "task=digits_ae"])
    assert cfg.model.init == "auto" and cfg.task.center is True
    assert [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)] == [32, 16, 8, 2]
    _, _, pca = build([f"optimizer={optimizer}", "task=digits_ae", "model.init=pca"])
    assert same_weights(model, pca)
    _, _, default = build([f"optimizer={optimizer}", "task=digits_ae", "model.init=default"])
    assert not same_weights(model, default)
    lines = [r.getMessage() for r in caplog.records if "model.init=auto" in r.getMessage()]
    assert len(lines) == 1 and "closed-form" in lines[0] and "64–32–16–8–2" in lines[0]


def test_closed_form_start_is_the_rank_k_pca_reconstruction_at_lambda_0():
    _, task, model = build(["optimizer=cadam", "task=digits_ae"])
    model.double()
    model.homotopy_lambda.value.fill_(0.0)
    x = task.tensors("train")[0].double().flatten(1)
    xc = x - x.mean(0)
    _, _, vh = torch.linalg.svd(xc, full_matrices=False)
    v = vh[:2].T
    with torch.no_grad():
        assert torch.allclose(model(x), x.mean(0) + xc @ v @ v.T, atol=1e-5)   # float32 weights


@pytest.mark.parametrize("overrides", [
    ["optimizer=adam", "task=digits_ae"],                          # plain optimizer: λ stays 1
    ["optimizer=adam", "task=digits_ae", "model.homotopy=true"],   # homotopy forced on, still no continuation
    ["optimizer=cadam", "task=digits"],                            # classification: no closed form
])
def test_standard_init_where_the_closed_form_does_not_apply(overrides):
    _, _, model = build(overrides)
    _, _, default = build([*overrides, "model.init=default"])
    assert same_weights(model, default)


def test_wide_autoencoder_falls_back_to_standard_init_and_says_why(caplog):
    over = ["optimizer=cadam", "task=digits_ae", "model.ae_widths=null"]    # 64–128–128–2: wider than the input
    with caplog.at_level(logging.INFO, logger="contnet"):
        _, _, model = build(over)
    _, _, default = build([*over, "model.init=default"])
    assert same_weights(model, default)
    assert any("standard init" in r.getMessage() and "grow" in r.getMessage() for r in caplog.records)


def test_plain_and_continuation_optimizers_see_the_same_centred_data():
    adam, _, _ = build(["optimizer=adam", "task=digits_ae"])
    cadam, _, _ = build(["optimizer=cadam", "task=digits_ae"])
    assert adam.task.center is True and cadam.task.center is True


def test_autoencoder_widths_narrow_towards_the_code():
    cfg = OmegaConf.create({"widths": None, "ae_widths": "auto", "depth": 2, "width": 128})
    assert autoencoder_widths(cfg, 64) == [32, 16, 8]
    assert autoencoder_widths(cfg, 784) == [200, 100, 50]
    cfg.widths = [20, 10]
    assert autoencoder_widths(cfg, 784) == [20, 10]
