"""Process-group facts and collectives, on the ground floor: which rank this process is, how many there are,
and the averages over ranks that tasks and continuation methods need.  Without an initialised process group
(a plain `contnet train`, a library call) every rank is rank 0 of 1 and every collective here is the identity.

Nothing here joins or leaves a process group: that is the engine's (contnet/engine/distributed.py).  Lower
floors (tasks, continuation) use this module, or receive a function of it, instead of torch.distributed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def context() -> Context:
    """This process's place in the default process group (rank 0 of 1 when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return Context()


def rank_mean(t: torch.Tensor) -> torch.Tensor:
    """`t` averaged over the ranks of the default process group (Σ over ranks ÷ world size, in one all_reduce,
    no host read); `t` itself when there is no process group or it has one rank.  `t` is left unchanged."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    total = t.clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


def global_token_mean(total: torch.Tensor, count: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Σ total / Σ count over every rank's tokens, as this rank's share: DistributedDataParallel averages the
    ranks' gradients (÷ world size), so rank r returns total_r · world / Σ count (one all_reduce of the
    count); the mean of these over ranks, which the logs show, is the global token mean too.  Without
    this, ranks with few tokens would weigh as much as ranks with many."""
    if not ctx.enabled:
        return total / count.clamp(min=1)
    n = count.detach().to(total.dtype).clone()
    dist.all_reduce(n)
    return total * ctx.world_size / n.clamp(min=1)
