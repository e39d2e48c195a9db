"""peft=none and peft=full: no adapter.  `none` trains the model as built (every model that is not a pretrained
LM); `full` makes every parameter of a pretrained LM trainable (the "FT" rows of the papers' tables)."""
from __future__ import annotations

from dataclasses import dataclass

from contnet.registry import PEFTS
from contnet.schema import Options


@dataclass
class NoneConfig(Options):
    """peft=none: no adapter, the model is trained as built, nothing is saved at the end."""


@dataclass
class FullConfig(Options):
    """peft=full: full fine-tuning, every parameter trainable."""
    save_adapter: bool = True     # write <run>/adapter/ (the whole model, safetensors) at the end of a completed run


@PEFTS.register("none", config=NoneConfig)
def build_none(cfg: NoneConfig, model, task=None):
    """The identity: the engine calls the peft builder of every run, this one changes nothing."""
    return model


@PEFTS.register("full", config=FullConfig)
def build_full(cfg: FullConfig, model, task=None):
    for p in model.parameters():
        p.requires_grad_(True)
    return model
