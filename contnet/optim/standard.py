"""Plain torch.optim optimizers: adam, adamw, rmsprop, sgd (λ, when a model has one, stays at 1).

The inner-optimizer fields are mixins (`AdamOptions`, `RMSpropOptions`, `SGDOptions`) that the continuation
optimizers (contnet/optim/continuation.py, parc.py) inherit too, so a key means the same everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch

from contnet.registry import OPTIMIZERS, ConfigError
from contnet.schema import Options, opt


@dataclass
class OptimizerOptions(Options):
    """Keys every optimizer has."""
    name: str = ""
    lr: float = opt(1e-3, gt=0)
    weight_decay: float = opt(0.0, ge=0)
    foreach: Optional[bool] = None   # null: torch picks the fastest implementation
    homotopy: bool = False      # plain optimizers leave λ = 1 (the standard network); continuation ones set true


@dataclass
class AdamOptions(OptimizerOptions):
    betas: List[float] = opt([0.9, 0.999])   # two numbers in [0, 1) (check below)
    eps: float = opt(1e-8, gt=0)
    amsgrad: bool = False

    def check(self) -> None:
        super().check()
        b = self.betas
        if len(b) != 2 or not all(0 <= x < 1 for x in b):
            raise self.error("betas", "must be two numbers in [0, 1), e.g. [0.9,0.999]")


@dataclass
class RMSpropOptions(OptimizerOptions):
    # PyTorch's defaults; TF1's were alpha 0.9, eps 1e-10
    alpha: float = opt(0.99, ge=0, le=1)     # smoothing constant
    eps: float = opt(1e-8, gt=0)
    momentum: float = opt(0.0, ge=0)
    centered: bool = False


@dataclass
class SGDOptions(OptimizerOptions):
    momentum: float = opt(0.0, ge=0)
    nesterov: bool = False

    def check(self) -> None:
        super().check()
        if self.nesterov and not self.momentum > 0:    # torch.optim.SGD refuses it at construction
            raise self.error("nesterov", "needs optimizer.momentum > 0")


@dataclass
class AdamConfig(AdamOptions):
    """optimizer=adam: torch.optim.Adam."""
    name: str = "adam"


@dataclass
class AdamWConfig(AdamOptions):
    """optimizer=adamw: torch.optim.AdamW (decoupled weight decay)."""
    name: str = "adamw"
    weight_decay: float = opt(0.01, ge=0)


@dataclass
class RMSpropConfig(RMSpropOptions):
    """optimizer=rmsprop: torch.optim.RMSprop."""
    name: str = "rmsprop"


@dataclass
class SGDConfig(SGDOptions):
    """optimizer=sgd: torch.optim.SGD."""
    name: str = "sgd"
    lr: float = opt(1e-2, gt=0)
    momentum: float = opt(0.9, ge=0)


def trainable(model) -> list[torch.nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters; check peft/model settings")
    return params


def make_adam(cfg: AdamOptions, params, decoupled: bool):
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay,
               amsgrad=cfg.amsgrad, foreach=cfg.foreach)


def make_rmsprop(cfg: RMSpropOptions, params):
    return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, weight_decay=cfg.weight_decay,
                               momentum=cfg.momentum, centered=cfg.centered, foreach=cfg.foreach)


def make_sgd(cfg: SGDOptions, params):
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.nesterov, foreach=cfg.foreach)


# The inner-optimizer table used by continuation wrappers as well: name -> fn(cfg, params).
INNER = {
    "adam": lambda cfg, params: make_adam(cfg, params, decoupled=False),
    "adamw": lambda cfg, params: make_adam(cfg, params, decoupled=True),
    "rmsprop": make_rmsprop,
    "sgd": make_sgd,
}

for _name, _cls in (("adam", AdamConfig), ("adamw", AdamWConfig), ("rmsprop", RMSpropConfig), ("sgd", SGDConfig)):
    OPTIMIZERS.register(_name, config=_cls)(lambda cfg, model, _fn=INNER[_name]: _fn(cfg, trainable(model)))
