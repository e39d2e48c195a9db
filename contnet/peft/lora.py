"""LoRA through Hugging Face peft, with the LoRA paper's E2E defaults (r=4, α=32, dropout 0.1, q and v).

The query/value module names are mapped per architecture.  GPT-2 fuses q, k and v in one Conv1D (`c_attn`);
the LoRA paper adapts q and v only, each with its own rank-4 pair (microsoft/LoRA `MergedLinear`,
enable_lora=[True, False, True]).  peft cannot target slices of one layer, so `gpt2_qkv: split` (default)
first splits each frozen `c_attn` into three Conv1D layers (`q_proj`, `k_proj`, `v_proj`, contiguous copies of
the weight columns) and targets q_proj/v_proj: 24·2·(4·1024 + 1024·4) = 393,216 on GPT-2 Medium, the paper's
true count.  `gpt2_qkv: fused` targets `c_attn` itself (same count, but one rank-4 A shared by q, k and v).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from contnet.registry import PEFTS, ConfigError
from contnet.schema import Options, opt


@dataclass
class LoRAConfig(Options):
    """peft=lora.  Defaults = the LoRA paper's E2E recipe (spec §B2)."""
    r: int = opt(4, gt=0, integer=True)        # rank (LoRA E2E: 4)
    alpha: float = opt(32.0, gt=0)             # scaling α/r = 8 (LoRA E2E: 32)
    dropout: float = opt(0.1, ge=0, lt=1)      # dropout on the adapter input (LoRA E2E: 0.1)
    # auto = the query and value projections of the architecture (GPT-2 c_attn q/v, llama q_proj/v_proj);
    # or an explicit list of module names, e.g. [q_proj,k_proj,v_proj,o_proj]
    targets: Any = "auto"
    # GPT-2 only. split (best reading, = microsoft/LoRA: q and v adapted separately, k untouched; c_attn is
    # split into exact q/k/v copies) | fused (peft on c_attn: one A shared by q, k, v)
    gpt2_qkv: str = opt("split", choices=("split", "fused"))
    bias: str = opt("none", choices=("none", "all", "lora_only"))    # LoRA E2E: none
    save_adapter: bool = True                  # write <run>/adapter/ at the end of a completed run (contnet eval)

    def check(self) -> None:
        super().check()
        t = self.targets
        if not (t in (None, "auto") or (isinstance(t, (list, tuple)) and t and all(isinstance(x, str) for x in t))):
            raise self.error("targets", "must be auto or a list of module names, e.g. [q_proj,v_proj]")

    def check_model(self, model_cfg) -> None:
        """Before a run: the model must be a language model (its attention projections are what LoRA adapts)."""
        from .common import require_language_model
        require_language_model("lora", "adapts the attention projections of a language model", model_cfg)

# model_type -> the query and value projection names peft should target
QV_TARGETS = {
    "llama": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"], "gemma": ["q_proj", "v_proj"], "gemma2": ["q_proj", "v_proj"],
    "phi3": ["qkv_proj"], "opt": ["q_proj", "v_proj"], "gpt_neo": ["q_proj", "v_proj"],
    "gptj": ["q_proj", "v_proj"], "gpt_neox": ["query_key_value"], "bloom": ["query_key_value"],
    "falcon": ["query_key_value"],
}


class SplitQKV(nn.Module):
    """GPT-2's fused c_attn as three Conv1D layers whose outputs are concatenated (same interface)."""

    def __init__(self, c_attn: nn.Module):
        super().__init__()
        from transformers.pytorch_utils import Conv1D
        nx, nf = c_attn.weight.shape
        d = nf // 3
        for k, name in enumerate(("q_proj", "k_proj", "v_proj")):
            layer = Conv1D(d, nx).to(device=c_attn.weight.device, dtype=c_attn.weight.dtype)
            with torch.no_grad():
                if not c_attn.weight.is_meta:
                    # contiguous column blocks: on CPU the three addmm's reproduce the fused result bit for bit
                    layer.weight.copy_(c_attn.weight[:, k * d:(k + 1) * d])
                    layer.bias.copy_(c_attn.bias[k * d:(k + 1) * d])
            layer.weight.requires_grad_(c_attn.weight.requires_grad)
            layer.bias.requires_grad_(c_attn.bias.requires_grad)
            setattr(self, name, layer)

    def forward(self, x):
        return torch.cat([self.q_proj(x), self.k_proj(x), self.v_proj(x)], dim=-1)


def split_gpt2_qkv(model: nn.Module) -> int:
    """Replace every GPT-2 self-attention c_attn by a SplitQKV; returns how many were replaced."""
    n = 0
    for mod in list(model.modules()):
        c_attn = getattr(mod, "c_attn", None)
        if c_attn is not None and not isinstance(c_attn, SplitQKV) and not getattr(mod, "is_cross_attention", False):
            mod.c_attn = SplitQKV(c_attn)
            n += 1
    return n


def lora_targets(model: nn.Module, targets, gpt2_qkv: str) -> tuple[list[str], bool]:
    """(target module names, fan_in_fan_out) for this architecture."""
    if targets not in (None, "auto"):
        return list(targets), False
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type is None:
        raise ConfigError(f"peft=lora adapts the attention projections of a language model; this "
                          f"{type(model).__name__} has no attention modules (use model=gpt2|gpt2-medium|smollm2-135m|"
                          "tiny-gpt2, or peft=none|full)")
    if model_type == "gpt2":
        if gpt2_qkv == "split":
            split_gpt2_qkv(model)
            return ["q_proj", "v_proj"], True
        return ["c_attn"], True
    if model_type in QV_TARGETS:
        return QV_TARGETS[model_type], False
    raise ConfigError(f"peft=lora: no query/value names known for model_type '{model_type}'; "
                      "set peft.targets=[name1,name2]")


def apply_lora(model: nn.Module, cfg: LoRAConfig | None = None, **overrides):
    """Wrap `model` with Hugging Face peft's LoRA: `apply_lora(model)`, `apply_lora(model, LoRAConfig(r=8))` or
    `apply_lora(model, gpt2_qkv="fused")` (keywords replace fields of `cfg`)."""
    cfg = dataclasses.replace(cfg or LoRAConfig(), **overrides)
    cfg.check()
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        raise ConfigError(f"peft=lora needs the nlg extra: pip install -e '.[nlg]' ({e})") from None
    names, fan_in_fan_out = lora_targets(model, cfg.targets, cfg.gpt2_qkv)
    config = LoraConfig(r=cfg.r, lora_alpha=float(cfg.alpha), lora_dropout=float(cfg.dropout), target_modules=names,
                        fan_in_fan_out=fan_in_fan_out, bias=cfg.bias, task_type="CAUSAL_LM")
    import warnings
    with warnings.catch_warnings():          # peft calls a deprecated transformers property: noise, not news
        warnings.filterwarnings("ignore", category=FutureWarning)
        try:
            return get_peft_model(model, config)   # freezes the base; lora_A Kaiming-uniform, lora_B = 0
        except ValueError as e:                    # e.g. target modules not found in the model
            raise ConfigError(f"peft.targets={names}: {str(e).splitlines()[0]}") from None


@PEFTS.register("lora", config=LoRAConfig)
def build_lora(cfg: LoRAConfig, model, task=None):
    return apply_lora(model, cfg)
