"""Causal language models for the NLG tasks: GPT-2 (hub), SmolLM2-135M (offline, from GGUF), tiny-gpt2 (random).

Every builder returns a transformers `*ForCausalLM` with two extras:
- `model.tokenizer`: the matching tokenizer (an attribute, not a submodule: it never enters state_dict);
- the task is handed the tokenizer at build time (`task.bind_tokenizer(tok)` when the task has it), because
  the model is built after the task and `train_batches` never sees the model.
`meta=True` (used by `contnet params`) builds the architecture on the meta device from the shipped
configuration in lm_configs.py: no weights, no download, no tokenizer.
"""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch

from contnet.registry import MODELS, ConfigError
from . import lm_configs

log = logging.getLogger("contnet")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cache_dir() -> Path:
    """Where converted weights live: $CONTNET_CACHE or ~/.cache/contnet."""
    return Path(os.environ.get("CONTNET_CACHE", Path.home() / ".cache" / "contnet")).expanduser()


def require_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError as e:
        raise ConfigError("language models need the nlg extra: pip install -e '.[nlg]' "
                          f"(transformers is missing: {e})") from None


def byte_tokenizer():
    """A byte-level tokenizer (256 byte symbols + <|endoftext|>) that needs no vocabulary files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub endpoint, so offline users get one line instead of minutes of retries."""
    from huggingface_hub import constants
    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def from_hub(model_cls, tok_cls, repo_id: str, name: str, **kw):
    """Load from the local HF cache, else download; offline and uncached -> one ConfigError line."""
    try:
        return model_cls.from_pretrained(repo_id, local_files_only=True, **kw), \
            tok_cls.from_pretrained(repo_id, local_files_only=True)
    except OSError:
        pass
    if not hub_reachable():
        raise ConfigError(f"model={name}: '{repo_id}' is not in the local Hugging Face cache and the hub is "
                          "unreachable (offline?); connect once to download it, or use model=smollm2-135m "
                          "or model=tiny-gpt2 offline")
    try:
        return model_cls.from_pretrained(repo_id, **kw), tok_cls.from_pretrained(repo_id)
    except OSError as e:
        raise ConfigError(f"model={name}: could not download '{repo_id}' from the hub: {str(e).splitlines()[0]}") \
            from None


def finish_lm(model, tokenizer, task, cfg):
    """Attach tokenizer and (when the run uses a continuation optimizer) a model-level λ; hand the tokenizer to the task."""
    from .common import finish, new_lambda
    if tokenizer is not None:
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token       # padding is masked out everywhere
        model.tokenizer = tokenizer
        if task is not None and hasattr(task, "bind_tokenizer"):
            task.bind_tokenizer(tokenizer)
    return finish(model, new_lambda(cfg))


def _dtype(cfg) -> torch.dtype:
    name = str(cfg.get("dtype", "float32"))
    if name not in DTYPES:
        raise ConfigError(f"model.dtype='{name}' is unknown; choose one of: {', '.join(DTYPES)}")
    return DTYPES[name]


def build_gpt2(cfg, task, meta: bool = False):
    require_transformers()
    from transformers import AutoTokenizer, GPT2LMHeadModel
    name = str(cfg.name)
    dropout = float(cfg.get("dropout", 0.0))
    config = lm_configs.gpt2_config(name, dropout=dropout)
    weights = str(cfg.get("weights", "pretrained"))
    if meta:
        with torch.device("meta"):
            return GPT2LMHeadModel(config)
    if name == "tiny-gpt2" or weights == "random":
        if name != "tiny-gpt2" and weights == "random":
            log.warning("model=%s with weights=random: an untrained network (smoke runs only)", name)
        torch.manual_seed(int(cfg.get("init_seed", 0)))       # same random "pretrained" net for every run seed
        model = GPT2LMHeadModel(config).to(_dtype(cfg))
        tok = byte_tokenizer() if name == "tiny-gpt2" else _gpt2_tokenizer(cfg, name)
    elif weights == "pretrained":
        model, tok = from_hub(GPT2LMHeadModel, AutoTokenizer, str(cfg.get("hub_id", name)), name,
                              resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, dtype=_dtype(cfg))
    else:
        raise ConfigError(f"model.weights='{weights}' is unknown; choose pretrained or random")
    return finish_lm(model, tok, task, cfg)


def _gpt2_tokenizer(cfg, name):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(str(cfg.get("hub_id", name)), local_files_only=True)
    except OSError:
        return byte_tokenizer()


@MODELS.register("gpt2")
@MODELS.register("gpt2-medium")
@MODELS.register("gpt2-large")
@MODELS.register("tiny-gpt2")
def build_gpt2_family(cfg, task):
    return build_gpt2(cfg, task)


@MODELS.register("smollm2-135m")
def build_smollm2(cfg, task):
    require_transformers()
    from .lm_smollm2 import load_smollm2
    model, tok = load_smollm2(cache_dir(), dtype=_dtype(cfg))
    # model.eos_token: the separator / end-of-text token of the LoRA format (MR <eos> text <eos>).  null keeps the
    # tokenizer's own (<|im_end|> for this instruct model); <|endoftext|> (the pretraining document separator) is
    # the alternative.  In a 40-step CPU run <|im_end|> learned the format, <|endoftext|> did not (docs/results/solo.md).
    eos = cfg.get("eos_token")
    if eos:
        tok.eos_token, tok.pad_token = str(eos), str(eos)
    return finish_lm(model, tok, task, cfg)


def build_meta(cfg):
    """The architecture on the meta device from the shipped configuration (for `contnet params`)."""
    require_transformers()
    name = str(cfg.name)
    if name == "smollm2-135m":
        from transformers import LlamaForCausalLM
        with torch.device("meta"):
            return LlamaForCausalLM(lm_configs.smollm2_config())
    if name in lm_configs.GPT2_SHAPES or name == "tiny-gpt2":
        return build_gpt2(cfg, None, meta=True)
    raise ConfigError(f"model={name} has no shipped configuration for meta-device counting")
