"""C-Adam, C-RMSProp and the general continuation optimizer (NPACS around any inner optimizer).

`ContinuationOptimizer` keeps the torch.optim contract: it *is* a torch.optim.Optimizer whose
`param_groups` and `state` are the inner optimizer's own objects (so LR schedulers, gradient
scalers and code reading `param_groups[i]["lr"]` act on the inner optimizer), `zero_grad` is the
inner one's.  `param_groups` and `state` are properties that always read the inner optimizer's
current objects: `inner.load_state_dict` replaces them, and a copy taken at construction would go
stale (a scheduler would then move an LR nobody reads).  `state_dict()` is torch.optim's own layout,
{"state", "param_groups"} of the inner optimizer, plus "continuation": λ, Δλ, Δλ_prev, θ_prev,
counters, gradient-norm window (or the PARC state).

While the driver is active (λ < 1) `step(closure)` runs the driver around `inner.step()`; afterwards
it is exactly `closure(); inner.step()`, so the run continues bitwise as the bare inner optimizer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from contnet.continuation.npacs import NPACSDriver, NPACSOptions
from contnet.continuation.state import LambdaState, find_lambda
from contnet.registry import OPTIMIZERS, ConfigError
from contnet.schema import opt
from .standard import INNER, AdamOptions, RMSpropOptions, SGDOptions, trainable


class _InnerAttr:
    """`param_groups` / `state` of the wrapper: always the inner optimizer's current object.
    (Optimizer.__init__ assigns them before `inner` exists; those first values are kept aside.)"""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        inner = obj.__dict__.get("inner")
        return getattr(inner, self.name) if inner is not None else obj.__dict__[f"_own_{self.name}"]

    def __set__(self, obj, value) -> None:
        inner = obj.__dict__.get("inner")
        if inner is not None:
            setattr(inner, self.name, value)
        else:
            obj.__dict__[f"_own_{self.name}"] = value


class ContinuationOptimizer(torch.optim.Optimizer):
    def __init__(self, inner: torch.optim.Optimizer, driver):
        params = [p for g in inner.param_groups for p in g["params"]]
        super().__init__(params, dict(inner.defaults))
        self.inner, self.driver = inner, driver

    param_groups = _InnerAttr()
    state = _InnerAttr()

    @torch.no_grad()
    def step(self, closure=None):
        if self.driver.active:
            return self.driver.step(self.inner, closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.inner.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)
        extra = getattr(self.driver, "zero_grad", None)
        if extra is not None:
            extra()

    def add_param_group(self, param_group: dict) -> None:
        if not hasattr(self, "inner"):          # called by Optimizer.__init__ before inner is set
            return super().add_param_group(param_group)
        self.inner.add_param_group(param_group)
        self.driver.params = [p for g in self.inner.param_groups for p in g["params"]]

    def state_dict(self) -> dict:
        return {**self.inner.state_dict(), "continuation": self.driver.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        if "continuation" not in state_dict:
            raise ValueError("this optimizer state has no continuation state (it was saved by a plain "
                             "optimizer, not by a continuation optimizer)")
        inner = state_dict.get("inner") or {k: v for k, v in state_dict.items() if k != "continuation"}
        self.inner.load_state_dict(inner)          # "inner": the layout of earlier checkpoints
        self.driver.load_state_dict(state_dict["continuation"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(inner={type(self.inner).__name__}, driver={type(self.driver).__name__})"


def require_lambda(cfg, model) -> LambdaState:
    lam = find_lambda(model)
    if lam is None:
        raise ConfigError(f"optimizer={cfg.name} needs a model with homotopy points; set model.homotopy=true")
    return lam


@dataclass
class AnyInnerOptions(AdamOptions, RMSpropOptions, SGDOptions):
    """The keys of every inner optimizer (adam, adamw, rmsprop, sgd); each reads its own."""
    inner: str = opt("adam", choices=tuple(INNER))   # A13: C-Adam/C-RMSProp are wrappers, C1's `opt` switch
    homotopy: bool = True        # turns the model's homotopy activations on when model.homotopy=auto
    lr: float = opt(1e-3, gt=0)  # spec §2.5 Fashion-MNIST config: adam, 0.001
    momentum: float = opt(0.0, ge=0)   # rmsprop, sgd


@dataclass
class CAdamConfig(NPACSOptions, AdamOptions):
    """optimizer=cadam: C-Adam, NPACS continuation (spec §2.3) around torch.optim.Adam."""
    homotopy: bool = True        # turns the model's homotopy activations on when model.homotopy=auto
    lr: float = opt(1e-3, gt=0)  # spec §2.5 Fashion-MNIST config: adam, 0.001


@dataclass
class CRMSpropConfig(NPACSOptions, RMSpropOptions):
    """optimizer=crmsprop: C-RMSProp, NPACS continuation around torch.optim.RMSprop."""
    homotopy: bool = True
    lr: float = opt(1e-3, gt=0)  # spec §2.5: the first NPACS commit used RMSProp at 5e-4; 1e-3 matches optimizer=rmsprop


@dataclass
class ContinuationConfig(NPACSOptions, AnyInnerOptions):
    """optimizer=continuation: NPACS continuation around any inner optimizer (`inner`)."""


def build_inner(cfg, params) -> torch.optim.Optimizer:
    return INNER[cfg.inner](cfg, params)


def build_npacs(cfg: NPACSOptions, model, inner: str) -> ContinuationOptimizer:
    lam = require_lambda(cfg, model)
    params = trainable(model)
    return ContinuationOptimizer(INNER[inner](cfg, params), NPACSDriver(cfg, lam, params))


@OPTIMIZERS.register("cadam", config=CAdamConfig)
def build_cadam(cfg: CAdamConfig, model):
    return build_npacs(cfg, model, "adam")


@OPTIMIZERS.register("crmsprop", config=CRMSpropConfig)
def build_crmsprop(cfg: CRMSpropConfig, model):
    return build_npacs(cfg, model, "rmsprop")


@OPTIMIZERS.register("continuation", config=ContinuationConfig)
def build_continuation(cfg: ContinuationConfig, model):
    return build_npacs(cfg, model, cfg.inner)
