"""Adapter directories (contnet.peft.io): Solo, LoRA and full fine-tuning each round-trip onto a fresh base model
with the same logits; the formats are the ecosystem's (JSON config + safetensors)."""
from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

pytest.importorskip("transformers")
pytest.importorskip("peft")

from contnet.continuation.state import get_lambda  # noqa: E402
from contnet.models.lm import build_gpt2  # noqa: E402
from contnet.peft import io, solo  # noqa: E402
from contnet.peft.lora import apply_lora  # noqa: E402
from contnet.registry import ConfigError  # noqa: E402

X = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(2))


def tiny():
    return build_gpt2(OmegaConf.create({"name": "tiny-gpt2", "homotopy": False}), None)


def train_a_little(model, steps=3):
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        model(X, labels=X).loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("build,kind,files", [
    (lambda m: solo.apply(m, solo.SoloConfig(placement="stride", stride=2, source=0, sharing="per_connection",
                                             rank=4, alpha=8.0, lambda_ramp_steps=2)), "solo",
     {"adapter_config.json", "adapter_model.safetensors"}),
    (lambda m: solo.apply(m, solo.SoloConfig(placement="dense", source=0, lambda_mode="trainable",
                                             skip_norm="fan_in")), "solo",
     {"adapter_config.json", "adapter_model.safetensors"}),
    (lambda m: apply_lora(m), "lora", {"adapter_config.json", "adapter_model.safetensors"}),
    (lambda m: m, "full", {"model.safetensors", "config.json"}),
])
def test_adapter_directory_round_trips_onto_a_fresh_base(tmp_path, build, kind, files):
    model = train_a_little(build(tiny()))
    expected = model(X).logits
    assert not torch.allclose(expected, tiny().eval()(X).logits)          # training changed the outputs
    path = io.save(model, tmp_path / "adapter")
    assert files <= {f.name for f in path.iterdir()} and io.saved_kind(path) == kind
    loaded = io.load(tiny(), path).eval()
    assert torch.equal(loaded(X).logits, expected)
    if kind == "solo":
        meta = json.loads((path / "adapter_config.json").read_text())
        assert meta["peft_type"] == "SOLO_CONNECTION" and meta["config"]["rank"] == model.solo_connection.cfg.rank
        if meta["config"]["lambda_mode"] == "scheduled":
            assert get_lambda(loaded) == get_lambda(model) == meta["lambda"]


def test_solo_adapter_keeps_the_lambda_reached(tmp_path):
    model = train_a_little(solo.apply(tiny(), solo.SoloConfig(lambda_ramp_steps=10)), steps=4)
    assert get_lambda(model) == pytest.approx(0.4)
    loaded = io.load(tiny(), io.save(model, tmp_path / "a"))
    assert get_lambda(loaded) == pytest.approx(0.4) and int(loaded.solo_connection.steps) == 4


def test_loading_something_else_fails_clearly(tmp_path):
    with pytest.raises(ValueError, match="no saved adapter"):
        io.load(tiny(), tmp_path)
    with pytest.raises(ValueError, match="not a Solo Connection adapter"):
        solo.load_adapter(tiny(), tmp_path)


def test_lora_on_a_model_without_attention_is_a_config_error():
    with pytest.raises(ConfigError, match="no attention modules"):
        apply_lora(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)))
    with pytest.raises(ConfigError, match="peft.targets"):
        apply_lora(tiny(), targets=["no_such_module"])
