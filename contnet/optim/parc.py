"""optimizer=parc: pseudo-arclength continuation (contnet.continuation.parc) around an inner optimizer.

One engine step is one corrector iteration: one closure call (forward + backward, which also yields
∂L/∂λ), one inner-optimizer update of θ, one update of λ, and (textbook constraint) one projection
onto the arclength hyperplane.  Predictor jumps happen inside the step that ends a corrector and
cost no closure call, so PARC's step count is directly comparable with Adam's.  After λ reaches 1 it is
exactly the inner optimizer.
"""
from __future__ import annotations

from dataclasses import dataclass

from contnet.continuation.parc import ArclengthOptions, PARCDriver
from contnet.parallel import rank_mean
from contnet.registry import OPTIMIZERS
from contnet.schema import opt
from .continuation import AnyInnerOptions, ContinuationOptimizer, build_inner, require_lambda
from .standard import trainable


@dataclass
class PARCConfig(ArclengthOptions, AnyInnerOptions):
    """optimizer=parc: the inner optimizer's keys (`inner`, C2's meta.optimizer default: adam) and PARC's."""
    lr: float = opt(1e-3, gt=0)   # inner lr (C2 AE descent_lr 5e-4; 1e-3 = optimizer=adam for comparisons)


@OPTIMIZERS.register("parc", config=PARCConfig)
def build_parc(cfg: PARCConfig, model):
    lam = require_lambda(cfg, model)
    params = trainable(model)
    # ∂L/∂λ and the early stop's loss are averaged over the ranks of a data-parallel run (identity in one process)
    return ContinuationOptimizer(build_inner(cfg, params), PARCDriver(cfg, lam, params, lr=cfg.lr, rank_mean=rank_mean))
