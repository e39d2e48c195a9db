"""BatchNorm statistics for evaluation ("precise BN"): re-estimate the running mean/variance from a few
training batches under the current weights before an evaluation.

Why: the running statistics are an exponential average (momentum 0.1) of batch statistics taken while the
weights were still moving; after a short or fast run they lag the weights, and eval-mode accuracy falls
far below what the same weights give with batch statistics (measured: docs/results/gpu.md, "BatchNorm").
The re-estimate is a cumulative average (momentum=None) over `n_batches` batches drawn with a fixed
generator, in train mode, without gradients and without touching the global RNG, so training itself
(which never reads the running statistics) and its numbers are unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def batchnorms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]


@torch.no_grad()
def recalibrate(model: nn.Module, batches, forward) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them from `batches` with `forward(batch)`.
    Returns the number of batches used (0: the model has no BatchNorm, nothing changed)."""
    bns = batchnorms(model)
    if not bns:
        return 0
    momenta = [m.momentum for m in bns]
    was_training = model.training
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    used = 0
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None                      # cumulative average over the batches below
        model.train()
        with torch.random.fork_rng(devices=devices):   # dropout etc. must not shift the training RNG
            for batch in batches:
                forward(batch)
                used += 1
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was_training)
    return used
