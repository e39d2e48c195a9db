"""Every reading of Solo Connection (placement, sharing, λ handling, scale) starts as the pretrained model, and the
scale switches scale the skip term by exactly what they say."""
from __future__ import annotations

import copy
import itertools

import pytest
import torch
from omegaconf import OmegaConf

pytest.importorskip("transformers")

from contnet.continuation.state import get_lambda  # noqa: E402
from contnet.models.lm import build_gpt2  # noqa: E402
from contnet.peft import solo  # noqa: E402

X = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
PLACEMENTS = [dict(placement="first_last"), dict(placement="stride", stride=2), dict(placement="stride", stride=3),
              dict(placement="stride", stride=4, source=0), dict(placement="symmetric"), dict(placement="dense", source=0),
              dict(placement="pairs", pairs=[[0, 2], [1, 4]])]
LAMBDAS = [dict(lambda_mode="scheduled"), dict(lambda_mode="scheduled", lambda_driver="external"),
           dict(lambda_mode="trainable"), dict(lambda_mode="fixed")]
SCALES = [dict(), dict(alpha=64.0), dict(skip_norm="fan_in"), dict(alpha=16.0, skip_norm="count")]


_TINY = []


def tiny():
    """A fresh copy of one tiny GPT-2 (copying is much cheaper than building)."""
    if not _TINY:
        _TINY.append(build_gpt2(OmegaConf.create({"name": "tiny-gpt2", "homotopy": False}), None).eval())
    return copy.deepcopy(_TINY[0])


@pytest.fixture(scope="module")
def base():
    return tiny()(X).logits


@pytest.mark.parametrize("place,sharing,lam,scale", [
    (p, s, lm, sc) for (p, s, lm), sc in zip(itertools.product(PLACEMENTS, ("shared", "per_connection"), LAMBDAS),
                                             itertools.cycle(SCALES))])
def test_every_reading_keeps_step0_identical_to_the_base_model(place, sharing, lam, scale, base):
    cfg = solo.SoloConfig(**place, **lam, **scale, sharing=sharing, rank=4)
    model = solo.apply(tiny(), cfg).eval()
    assert torch.equal(model(X).logits, base)


@pytest.mark.parametrize("scale", SCALES)
def test_every_scale_switch_keeps_step0_identical(scale, base):
    model = solo.apply(tiny(), solo.SoloConfig(placement="dense", source=0, **scale)).eval()
    assert torch.equal(model(X).logits, base)


def _skip_delta(**kw):
    """h_2 (after the skip 0 -> 2) minus the base model's h_2, with λ = 1 and a random map."""
    torch.manual_seed(0)
    model = solo.apply(tiny(), solo.SoloConfig(placement="pairs", pairs=[[0, 2]], lambda_mode="fixed",
                                               init="small_random", init_std=0.2, dropout=0.0, rank=4, **kw)).eval()
    h = model(X, output_hidden_states=True).hidden_states[2]
    return h - tiny()(X, output_hidden_states=True).hidden_states[2]


def test_alpha_scales_the_skip_term_by_alpha_over_rank():
    one, scaled = _skip_delta(), _skip_delta(alpha=12.0)          # α/r = 3
    assert one.abs().max() > 1e-3
    torch.testing.assert_close(scaled, 3 * one, rtol=1e-4, atol=1e-5)


def test_skip_norms_divide_by_the_number_of_skips():
    cfg = solo.SoloConfig(placement="dense", source=0, skip_norm="fan_in")
    conn = solo.SoloConnection(cfg, 8, 4, None)                 # pairs (0,2) (0,3) (1,3) (0,4) (1,4) (2,4)
    fan_in = {j: sum(1 for _, t in conn.pairs if t == j) for _, j in conn.pairs}
    assert conn.scales == [1 / fan_in[j] for _, j in conn.pairs] and conn.scales[-1] == pytest.approx(1 / 3)
    count = solo.SoloConnection(solo.SoloConfig(placement="dense", source=0, skip_norm="count", alpha=8.0, rank=4),
                                8, 4, None)
    assert count.scales == [2.0 / 6] * 6
    with pytest.raises(solo.ConfigError, match="skip_norm"):
        solo.SoloConnection(solo.SoloConfig(skip_norm="sqrt"), 8, 4, None)


def test_the_ramp_trains_from_the_first_step():
    model = solo.apply(tiny(), solo.SoloConfig(lambda_ramp_steps=3)).train()
    assert get_lambda(model) == 0.0                              # built: exactly the pretrained model
    model(X, labels=X).loss.backward()
    assert get_lambda(model) == pytest.approx(1 / 3)             # the first step already sees the skip
    assert model.solo_connection.maps[0].B.weight.grad.abs().sum() > 0


def test_the_adapter_follows_the_models_mode():
    """Applied to a model in eval mode, the skip's dropout is off (same output twice), and train() turns it on."""
    model = solo.apply(tiny().eval(), solo.SoloConfig(lambda_mode="fixed", init="small_random", init_std=0.2,
                                                     dropout=0.5))
    assert not model.solo_connection.training
    with torch.no_grad():
        assert torch.equal(model(X).logits, model(X).logits)
        model.train()
        assert model.solo_connection.training and not torch.equal(model(X).logits, model(X).logits)
