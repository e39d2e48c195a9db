"""RNG states: saved in every checkpoint so that a resumed run draws what the uninterrupted run would have
drawn (torch, Python, NumPy, CUDA), one state per rank under data parallelism."""
from __future__ import annotations

import logging
import random

import numpy as np
import torch
import torch.distributed as dist

from contnet.parallel import Context

log = logging.getLogger("contnet")


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    """Restore a state `rng_state` or `rank_rng_state` made.  CUDA: only the GPUs this process sees (a
    checkpoint from a machine with more GPUs restores the ones that exist, and says so once)."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if not torch.cuda.is_available():
        return
    if "cuda_device" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_device"], device)       # this rank's own GPU
    elif "cuda" in state:
        saved, count = state["cuda"], torch.cuda.device_count()
        if len(saved) > count:
            log.warning("the checkpoint holds the RNG states of %d GPUs, this process sees %d: restoring the first %d",
                        len(saved), count, count)
        for i, s in enumerate(saved[:count]):
            torch.cuda.set_rng_state(s, i)


def rank_rng_state(device: torch.device) -> dict:
    """This process's RNG state, CUDA only for the GPU it trains on (its rank's GPU under torchrun)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if device.type == "cuda":
        state["cuda_device"] = torch.cuda.get_rng_state(device)
    return state


def gather_rng(ctx: Context, device: torch.device) -> list[dict] | None:
    """Every rank's RNG state, gathered on rank 0 (a collective: every rank calls it at the same step);
    None on the other ranks and in a single process."""
    if not ctx.enabled:
        return None
    states = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(rank_rng_state(device), states, dst=0)
    return states


def restore_rng(ckpt: dict, ctx: Context, device: torch.device) -> None:
    """Each rank takes its own saved RNG state.  A checkpoint written by a different number of processes
    (or a single-process one under torchrun, and vice versa) has no state for some ranks: one warning, then
    every rank takes rank 0's state (the ranks share one seed and one data order, so this is the state
    they would all have had)."""
    ranks = ckpt.get("rng_ranks")
    if ranks is None and not ctx.enabled:
        set_rng_state(ckpt["rng"], device)
        return
    ranks = ranks or [ckpt["rng"]]
    if len(ranks) == ctx.world_size:
        set_rng_state(ranks[ctx.rank], device)
        return
    if ctx.is_main:
        log.warning("the checkpoint was written by %d process(es), this run has %d: every rank continues from "
                    "rank 0's RNG state", len(ranks), ctx.world_size)
    state = dict(ranks[0])
    cuda = state.pop("cuda", None)             # a single-process checkpoint: take its training GPU's state
    if cuda and "cuda_device" not in state and device.type == "cuda":
        state["cuda_device"] = cuda[min(device.index or 0, len(cuda) - 1)]
    set_rng_state(state, device)
