"""Plain torch.optim optimizers: adam, adamw, rmsprop, sgd (λ, when a model has one, stays at 1).

The inner-optimizer fields are mixins (`AdamOptions`, `RMSpropOptions`, `SGDOptions`) that the continuation
optimizers (contnet/optim/continuation.py, parc.py) inherit too, so a key means the same everywhere.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, List, Optional

import torch

from contnet.registry import OPTIMIZERS, ConfigError
from contnet.schema import Options, opt


@dataclass
class OptimizerOptions(Options):
    """Keys every optimizer has."""
    lr: float = opt(1e-3, gt=0)
    weight_decay: float = opt(0.0, ge=0)
    foreach: Optional[bool] = None   # null: torch picks the fastest implementation
    fused: Any = opt("auto", choices=(True, False, "auto"))   # auto: torch's fused kernel when the params are on CUDA
    homotopy: bool = False      # plain optimizers leave λ = 1 (the standard network); continuation ones set true

    def check(self) -> None:
        super().check()
        if self.fused is None:
            raise self.error("fused", "must be one of true, false, auto (auto: fused on CUDA)")
        if self.fused is True and self.foreach:
            raise self.error("fused", "torch has no fused kernel with optimizer.foreach=true; "
                                      "set optimizer.foreach=null, or optimizer.fused=auto")


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


@dataclass
class AdamWConfig(AdamOptions):
    """optimizer=adamw: torch.optim.AdamW (decoupled weight decay)."""
    weight_decay: float = opt(0.01, ge=0)


@dataclass
class RMSpropConfig(RMSpropOptions):
    """optimizer=rmsprop: torch.optim.RMSprop."""


@dataclass
class SGDConfig(SGDOptions):
    """optimizer=sgd: torch.optim.SGD."""
    lr: float = opt(1e-2, gt=0)
    momentum: float = opt(0.9, ge=0)


def trainable(model) -> list[torch.nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters; check peft/model settings")
    return params


def params_device(params) -> str:
    """The device type of the parameters ("mixed" when they are spread over several)."""
    kinds = {p.device.type for p in params}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def no_fused_kernel(cls, params) -> str | None:
    """Why torch cannot run `cls` fused on these parameters (None: it can)."""
    if "fused" not in inspect.signature(cls).parameters:
        return f"torch.optim.{cls.__name__} has no fused kernel"
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    runs_on = _get_fused_kernels_supported_devices()
    off = sorted({p.device.type for p in params} - set(runs_on))
    if off:
        return f"torch's fused {cls.__name__} does not run on {', '.join(off)} (it runs on {', '.join(runs_on)})"
    if not all(torch.is_floating_point(p) for p in params):
        return f"torch's fused {cls.__name__} needs floating-point parameters"
    return None


def fused_kwargs(cls, cfg: OptimizerOptions, params) -> dict:
    """optimizer.fused as `cls`'s keyword: {} (torch's unfused default: today's path and numbers) or
    {"fused": True}.  auto: fused when the parameters are on CUDA, torch has the kernel for `cls` and
    optimizer.foreach is not true; true where torch has no such kernel: a ConfigError naming the fix.
    A continuation optimizer's inner optimizer goes through here too, so C-Adam and Adam pick the same
    kernel (bitwise transparency once λ = 1)."""
    params = list(params)
    if cfg.fused is False or (cfg.fused == "auto" and (cfg.foreach or params_device(params) != "cuda")):
        return {}
    why = no_fused_kernel(cls, params)
    if why is None:
        return {"fused": True}
    if cfg.fused == "auto":
        return {}
    raise ConfigError(f"optimizer.fused=true: {why}; use optimizer.fused=auto (or false)")


def make_adam(cfg: AdamOptions, params, decoupled: bool):
    cls, params = (torch.optim.AdamW if decoupled else torch.optim.Adam), list(params)
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay,
               amsgrad=cfg.amsgrad, foreach=cfg.foreach, **fused_kwargs(cls, cfg, params))


def make_rmsprop(cfg: RMSpropOptions, params):
    params = list(params)
    return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, weight_decay=cfg.weight_decay,
                               momentum=cfg.momentum, centered=cfg.centered, foreach=cfg.foreach,
                               **fused_kwargs(torch.optim.RMSprop, cfg, params))


def make_sgd(cfg: SGDOptions, params):
    params = list(params)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.nesterov, foreach=cfg.foreach, **fused_kwargs(torch.optim.SGD, cfg, params))


# The inner-optimizer table used by continuation wrappers as well: name -> fn(cfg, params).
INNER = {
    "adam": lambda cfg, params: make_adam(cfg, params, decoupled=False),
    "adamw": lambda cfg, params: make_adam(cfg, params, decoupled=True),
    "rmsprop": make_rmsprop,
    "sgd": make_sgd,
}

for _name, _cls in (("adam", AdamConfig), ("adamw", AdamWConfig), ("rmsprop", RMSpropConfig), ("sgd", SGDConfig)):
    OPTIMIZERS.register(_name, config=_cls)(lambda cfg, model, _fn=INNER[_name]: _fn(cfg, trainable(model)))
