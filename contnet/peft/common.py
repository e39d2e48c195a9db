"""Helpers shared by the adapters: exact parameter counts, freezing, finding decoder blocks."""
from __future__ import annotations

from torch import nn

from contnet.models.common import count_parameters  # noqa: F401  (re-exported: adapters report with it)
from contnet.registry import ConfigError


def parameter_report(model: nn.Module) -> str:
    trainable, total = count_parameters(model)
    return f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {100 * trainable / max(total, 1):.4f}"


def require_language_model(peft: str, what: str, model_cfg) -> None:
    """Before a run (contnet.validation): an adapter that `what` (e.g. 'adapts the attention projections of a
    language model') refuses another model in one line, as its builder would once the job started.  `model_cfg`
    is the model's typed config (ModelConfig)."""
    if model_cfg.language_model:
        return
    from contnet.registry import MODELS
    lms = [n for n in MODELS.names() if MODELS.config(n).language_model]
    raise ConfigError(f"peft={peft}: {what} and model={model_cfg.name} is not one; use a language model "
                      f"(model={'|'.join(lms)}) or peft=none|full")


def freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def hidden_size(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    for key in ("hidden_size", "n_embd", "d_model"):
        if config is not None and getattr(config, key, None):
            return int(getattr(config, key))
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is None:
        raise ConfigError("cannot infer the hidden size of this model; it has no config.hidden_size")
    return int(emb.embedding_dim)


def decoder_blocks(model: nn.Module, path: str | None = None) -> nn.ModuleList:
    """The ModuleList of decoder blocks: `path` (dotted, e.g. 'transformer.h') or the longest list whose
    children all share one class (GPT-2: transformer.h, llama: model.layers)."""
    if path:
        mod = model
        for part in str(path).split("."):
            mod = getattr(mod, part, None)
            if mod is None:
                raise ConfigError(f"peft.blocks='{path}': the model has no such attribute path")
        if not isinstance(mod, nn.ModuleList):
            raise ConfigError(f"peft.blocks='{path}' is a {type(mod).__name__}, not a ModuleList of blocks")
        return mod
    best = None
    for _, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) >= 2 and len({type(m) for m in mod}) == 1:
            if best is None or len(mod) > len(best):
                best = mod
    if best is None:
        raise ConfigError("no decoder-block ModuleList found; set peft.blocks to its dotted path")
    return best
