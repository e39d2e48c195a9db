"""optimizer=parc: pseudo-arclength continuation (contnet.continuation.parc) around an inner optimizer.

One engine step is one corrector iteration: one closure call (forward + backward, which also yields
∂L/∂λ), one inner-optimizer update of θ, one update of λ, and (textbook constraint) one projection
onto the arclength hyperplane.  Predictor jumps happen inside the step that ends a corrector and
cost no closure call, so PARC's step count is directly comparable with Adam's.
"""
from __future__ import annotations

from contnet.continuation.parc import PARCConfig, PARCDriver
from contnet.registry import OPTIMIZERS
from .continuation import ContinuationOptimizer, build_inner, require_lambda
from .standard import trainable


@OPTIMIZERS.register("parc")
def build_parc(cfg, model):
    lam = require_lambda(cfg, model)
    params = trainable(model)
    inner = build_inner(cfg, params, str(cfg.get("inner", "adam")))
    driver = PARCDriver(PARCConfig.from_cfg(cfg), lam, params, lr=float(cfg.lr))
    return ContinuationOptimizer(inner, driver)
