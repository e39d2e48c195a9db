"""Solo Connection and LoRA on tiny models: exact identity at step 0, only adapters train, counts, save/load."""
from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest
import torch
from omegaconf import OmegaConf

pytest.importorskip("transformers")
pytest.importorskip("peft")

from contnet.continuation.state import get_lambda, set_lambda  # noqa: E402
from contnet.models.lm import build_gpt2  # noqa: E402
from contnet.peft import solo  # noqa: E402
from contnet.peft.common import count_parameters  # noqa: E402
from contnet.peft.lora import apply_lora  # noqa: E402
from contnet.registry import ConfigError  # noqa: E402

X = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(0))


def tiny():
    return build_gpt2(OmegaConf.create({"name": "tiny-gpt2", "homotopy": False}), None).eval()


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=100, hidden_size=48, intermediate_size=96, num_hidden_layers=5,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def base_logits():
    return tiny()(X).logits


@pytest.mark.parametrize("cfg", [
    solo.SoloConfig(),
    solo.SoloConfig(placement="stride", stride=2, sharing="per_connection", rank=8),
    solo.SoloConfig(placement="dense", source=0, layer_norm=True, bias=True),
    solo.SoloConfig(placement="symmetric", lambda_mode="trainable"),
    solo.SoloConfig(lambda_mode="fixed", lambda_driver="external"),
])
def test_solo_step0_is_exactly_the_base_model(cfg, base_logits):
    model = solo.apply(tiny(), cfg)
    assert torch.equal(model(X).logits, base_logits)


def test_lora_step0_is_exactly_the_base_model(base_logits):
    for qkv in ("split", "fused"):
        model = apply_lora(tiny(), gpt2_qkv=qkv).eval()
        assert torch.equal(model(X).logits, base_logits), qkv


def _one_step(model, lr=1e-2):
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(2):
        opt.zero_grad()
        model(X, labels=X).loss.backward()
        opt.step()
    return {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}


def test_after_a_step_only_adapter_parameters_changed():
    changed = _one_step(solo.apply(tiny(), solo.SoloConfig(lambda_ramp_steps=1)))
    assert changed and all(n.startswith("solo_connection.") for n in changed)
    assert any(".B." in n for n in changed)
    changed = _one_step(apply_lora(tiny()))
    assert changed and all("lora_" in n for n in changed)


def test_lambda_ramp_counts_training_forwards_only():
    model = solo.apply(tiny(), solo.SoloConfig(lambda_ramp_steps=4))
    assert get_lambda(model) == 0.0
    model.train()
    for k in range(3):
        model(X)                              # the first training pass already runs at λ = 1/4 (none wasted)
        assert get_lambda(model) == pytest.approx((k + 1) / 4)
    with torch.no_grad():
        model.eval()(X)                       # evaluation does not advance the ramp
    model.train()(X)
    assert get_lambda(model) == 1.0 and int(model.solo_connection.steps) == 4


def test_external_lambda_scales_the_skip():
    model = solo.apply(tiny(), solo.SoloConfig(lambda_driver="external", init="small_random", init_std=0.05))
    base = tiny()(X).logits
    set_lambda(model, 0.0)
    assert torch.equal(model(X).logits, base)
    set_lambda(model, 1.0)
    assert not torch.allclose(model(X).logits, base)


def test_placements_and_counts():
    c = solo.connections
    assert c(solo.SoloConfig(), 6) == [(1, 3), (2, 4), (3, 5), (4, 6)]          # the default: stride 2
    assert c(solo.SoloConfig(placement="first_last"), 24) == [(1, 24)]
    assert c(solo.SoloConfig(placement="stride", stride=3), 6) == [(1, 4), (2, 5), (3, 6)]
    assert c(solo.SoloConfig(placement="symmetric", source=0), 6) == [(0, 6), (1, 5), (2, 4)]
    assert len(c(solo.SoloConfig(placement="dense", source=0), 4)) == 6      # (0,2)(0,3)(1,3)(0,4)(1,4)(2,4)
    with pytest.raises(ConfigError):
        c(solo.SoloConfig(placement="pairs", pairs=[[3, 4]]), 6)
    with pytest.raises(ConfigError):          # λ = 0 and B = 0 would never train
        solo.apply(tiny(), solo.SoloConfig(lambda_mode="trainable", init="zero_b"))


def test_gpt2_medium_counts_on_meta_device():
    from contnet.cli.params import main
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["model=gpt2-medium", "peft=lora,solo"]) == 0
    out = buf.getvalue()
    assert "393,216" in out and "262,144" in out
    from contnet.models.lm import build_meta
    meta = solo.apply(build_meta(OmegaConf.create({"name": "gpt2-medium"})), solo.SoloConfig())
    assert count_parameters(meta)[0] == 2 * 1024 * 128


def test_save_and_load_adapter_alone(tmp_path):
    cfg = solo.SoloConfig(placement="stride", sharing="per_connection", rank=4, lambda_ramp_steps=1)
    model = solo.apply(tiny(), cfg)
    _one_step(model)
    model.eval()
    path = solo.save_adapter(model, tmp_path / "solo")
    assert sum(f.stat().st_size for f in path.iterdir()) < 200_000     # the adapter, not the model
    fresh = solo.load_adapter(tiny(), path).eval()
    assert torch.equal(fresh(X).logits, model(X).logits)
    assert get_lambda(fresh) == get_lambda(model) == 1.0


def test_solo_on_a_llama_model_and_generate_with_cache():
    base = tiny_llama()
    ids = torch.randint(0, 100, (1, 6))
    ref = base(ids).logits
    model = solo.apply(tiny_llama(), solo.SoloConfig(rank=4, lambda_driver="external", init="small_random",
                                                     init_std=0.1))
    set_lambda(model, 0.0)
    assert torch.equal(model(ids).logits, ref)
    set_lambda(model, 1.0)
    # incremental decoding (KV cache) gives the same tokens as full re-computation: the skip is per position
    out = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=0)
    seq = ids
    for _ in range(5):
        seq = torch.cat([seq, model(seq).logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(out, seq)
    assert count_parameters(model)[0] == 2 * 48 * 4
