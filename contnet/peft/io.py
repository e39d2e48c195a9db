"""Adapters users can keep: one directory per fine-tuned model, in the ecosystem's formats.

- solo: adapter_config.json (peft_type SOLO_CONNECTION) + adapter_model.safetensors (contnet.peft.solo)
- lora: Hugging Face peft's own `save_pretrained` (adapter_config.json + adapter_model.safetensors)
- full: the whole model with safetensors (`model.safetensors`, shared/tied tensors stored once) + config.json

`save(model, path)` picks the format from the model; `load(base, path)` puts a saved directory onto a freshly built
base model (the one the run started from) and returns the model to use.  A training run writes `<run>/adapter/`
at its end (peft.save_adapter); `contnet eval <run>` loads it.
"""
from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from . import solo

KINDS = ("solo", "lora", "full")
FULL_WEIGHTS = "model.safetensors"


def kind_of(model: nn.Module) -> str:
    if hasattr(model, solo.ATTR):
        return "solo"
    if hasattr(model, "peft_config"):
        return "lora"
    return "full"


def save(model: nn.Module, path) -> Path:
    path = Path(path)
    kind = kind_of(model)
    if kind == "solo":
        return solo.save_adapter(model, path)
    path.mkdir(parents=True, exist_ok=True)
    if kind == "lora":
        model.save_pretrained(str(path))           # peft: adapter_config.json + adapter_model.safetensors
        return path
    from safetensors.torch import save_model
    save_model(model, str(path / FULL_WEIGHTS), metadata={"format": "pt"})
    if getattr(model, "config", None) is not None and hasattr(model.config, "to_json_file"):
        model.config.to_json_file(str(path / "config.json"))
    return path


def saved_kind(path) -> str | None:
    path = Path(path)
    if solo.read_config(path) is not None:
        return "solo"
    try:
        meta = json.loads((path / "adapter_config.json").read_text())
    except (OSError, ValueError):
        meta = None
    if meta is not None and str(meta.get("peft_type", "")).upper() == "LORA":
        return "lora"
    if (path / FULL_WEIGHTS).exists():
        return "full"
    return None


def load(base: nn.Module, path) -> nn.Module:
    """The saved fine-tuned model: `base` (a fresh, unadapted build) with the directory's weights on it."""
    path = Path(path)
    kind = saved_kind(path)
    if kind == "solo":
        return solo.load_adapter(base, path)
    if kind == "lora":
        from peft import PeftModel

        from .lora import split_gpt2_qkv
        targets = set(json.loads((path / "adapter_config.json").read_text()).get("target_modules") or [])
        if getattr(getattr(base, "config", None), "model_type", None) == "gpt2" and targets & {"q_proj", "v_proj"}:
            split_gpt2_qkv(base)                   # trained with gpt2_qkv=split: the same module names
        tokenizer = getattr(base, "tokenizer", None)
        model = PeftModel.from_pretrained(base, str(path))
        if tokenizer is not None:
            model.tokenizer = tokenizer
        return model
    if kind == "full":
        from safetensors.torch import load_model
        ref = next(base.parameters())
        load_model(base, str(path / FULL_WEIGHTS), strict=True, device=str(ref.device))
        return base
    raise ValueError(f"{path} holds no saved adapter or model (expected adapter_config.json or {FULL_WEIGHTS})")


def save_for_run(peft_cfg, model: nn.Module, run_dir) -> Path | None:
    """End of a completed run: `<run>/adapter/` when the run's peft config (typed or composed) says save_adapter;
    an option with nothing to save (peft=none) has no such key."""
    if not getattr(peft_cfg, "save_adapter", False):
        return None
    import logging
    path = save(model, Path(run_dir) / "adapter")
    logging.getLogger("contnet").info("%s adapter saved to %s", kind_of(model), path)
    return path
