"""Plain torch.optim optimizers: adam, adamw, rmsprop, sgd (λ, when a model has one, stays at 1)."""
from __future__ import annotations

import torch

from contnet.registry import OPTIMIZERS, ConfigError


def trainable(model) -> list[torch.nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters; check peft/model settings")
    return params


def check_lr(cfg) -> float:
    lr = float(cfg.lr)
    if not lr > 0:
        raise ConfigError(f"optimizer.lr={cfg.lr} must be > 0")
    return lr


def _foreach(cfg):
    return cfg.get("foreach", None)


def make_adam(cfg, params, decoupled: bool):
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    return cls(params, lr=check_lr(cfg), betas=tuple(cfg.betas), eps=float(cfg.eps),
               weight_decay=float(cfg.weight_decay), amsgrad=bool(cfg.get("amsgrad", False)), foreach=_foreach(cfg))


def make_rmsprop(cfg, params):
    return torch.optim.RMSprop(params, lr=check_lr(cfg), alpha=float(cfg.alpha), eps=float(cfg.eps),
                               weight_decay=float(cfg.weight_decay), momentum=float(cfg.momentum),
                               centered=bool(cfg.get("centered", False)), foreach=_foreach(cfg))


def make_sgd(cfg, params):
    return torch.optim.SGD(params, lr=check_lr(cfg), momentum=float(cfg.momentum),
                           weight_decay=float(cfg.weight_decay), nesterov=bool(cfg.get("nesterov", False)),
                           foreach=_foreach(cfg))


# The inner-optimizer table used by continuation wrappers as well: name -> fn(cfg, params).
INNER = {
    "adam": lambda cfg, params: make_adam(cfg, params, decoupled=False),
    "adamw": lambda cfg, params: make_adam(cfg, params, decoupled=True),
    "rmsprop": make_rmsprop,
    "sgd": make_sgd,
}

for _name, _fn in INNER.items():
    OPTIMIZERS.register(_name)(lambda cfg, model, _fn=_fn: _fn(cfg, trainable(model)))
