"""Data-parallel runs under torchrun: joining the process group, wrapping the model, the engine's collectives.
Which rank a process is, and the averages over ranks that lower floors use, are contnet/parallel.py's.

Contract (docs/reliability.md):
- `torchrun --standalone --nproc_per_node=N -m contnet.cli.main train ...`; torchrun sets RANK,
  WORLD_SIZE, LOCAL_RANK. Without them (a plain `contnet train`) every helper here is a no-op.
- `trainer.batch_size` is per process: the global batch is batch_size × N. Every rank draws the same
  epoch order (same seed) and collates only its contiguous slice of each global batch (sharded collation:
  `task.train_batches(..., shard=(rank, N))`), so N processes with batch B step exactly like 1 process with
  batch N·B (DistributedDataParallel averages the gradients) while each rank gathers 1/N of the data.
- Rank 0 owns the run directory: metrics, checkpoints, summary.json, plots, W&B. Other ranks write
  nothing. The run directory is decided by rank 0 and broadcast before Hydra starts.
- All ranks share one seed; a checkpoint holds every rank's RNG state (gathered on rank 0, `rng_ranks`)
  and each rank restores its own; resuming with another number of ranks warns and continues from rank 0's.
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import re

import torch
import torch.distributed as dist

from contnet.errors import ConfigError
from contnet.parallel import Context, context, rank_mean
from .batchnorm import batchnorms
from .rng import rank_rng_state, set_rng_state


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env() -> Context:
    """Join the process group torchrun describes (gloo on CPU, nccl for CUDA tensors); no-op otherwise."""
    if not launched_by_torchrun() or dist.is_initialized():
        return context()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    backend = "gloo"
    if torch.cuda.is_available() and os.environ.get("CONTNET_DIST_BACKEND") != "gloo":
        torch.cuda.set_device(local_rank)
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend=os.environ.get("CONTNET_DIST_BACKEND", backend))
    return context()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_for(name: str, ctx: Context) -> str:
    """Each rank gets its own GPU: `auto`/`cuda` mean cuda:LOCAL_RANK in a data-parallel run.  An explicit
    cuda:N would put every rank on one GPU (NCCL refuses that): one clear error instead."""
    if ctx.enabled and name.startswith("cuda:"):
        raise ConfigError(f"trainer.device={name} under torchrun with {ctx.world_size} processes would put every "
                          f"rank on one GPU; use trainer.device=cuda (rank r takes cuda:LOCAL_RANK) and choose the "
                          f"GPUs with CUDA_VISIBLE_DEVICES")
    if ctx.enabled and name in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{ctx.local_rank}"
    return name


def shard_of(ctx: Context) -> tuple[int, int] | None:
    """`task.train_batches(global_batch, gen, device, shard=shard_of(ctx))`: (rank, world_size) under data
    parallelism, None (the whole batch) in a single process."""
    return (ctx.rank, ctx.world_size) if ctx.enabled else None


def unused_parameters(model, loss) -> list[str]:
    """Names of the trainable parameters that one forward/backward (`loss()`, a scalar of `model`) leaves
    without a gradient, e.g. a Sequential2D grid cell whose slot never reaches the output.  The probe
    leaves no trace: RNG states, buffers (BatchNorm statistics, λ) and every .grad are put back."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    device = params[0][1].device if params else torch.device("cpu")
    rng = rank_rng_state(device)
    buffers = [b.detach().clone() for b in model.buffers()]
    grads = [p.grad for _, p in params]
    for _, p in params:
        p.grad = None
    try:
        loss().backward()
        return [n for n, p in params if p.grad is None]
    finally:
        for (_, p), g in zip(params, grads):
            p.grad = g
        with torch.no_grad():
            for b, saved in zip(model.buffers(), buffers):
                b.copy_(saved)
        set_rng_state(rng, device)


def find_unused(setting, model, loss, ctx: Context) -> bool:
    """trainer.find_unused_parameters: true | false | auto (probe one step; on when some parameter gets no
    gradient: DistributedDataParallel otherwise waits forever for its gradient, or errors).  Ranks agree
    (one all_reduce), so that every rank builds the same reducer."""
    if setting in (True, False):
        return setting
    unused = unused_parameters(model, loss)
    flag = torch.tensor([float(len(unused))])
    if ctx.enabled:
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() > 0 and ctx.is_main:
        logging.getLogger("contnet").info(
            "trainer.find_unused_parameters=auto: %d parameter(s) get no gradient (%s): DistributedDataParallel "
            "runs with find_unused_parameters=True", len(unused), ", ".join(unused[:3]) + (", …" if len(unused) > 3 else ""))
    return flag.item() > 0


def sync_batchnorm(setting, model, ctx: Context, device: torch.device) -> bool:
    """trainer.sync_bn: auto (on for a data-parallel CUDA run of a model with BatchNorm) | true | false.
    On: every BatchNorm becomes a SyncBatchNorm (in place; the same parameter and buffer tensors, so the
    optimizer and checkpoints are unaffected), whose batch statistics cover the global batch, as in one
    process.  torch has no CPU SyncBatchNorm: true on CPU under torchrun is one clear error."""
    if not ctx.enabled or setting is False or not batchnorms(model):
        return False
    if device.type != "cuda":
        if setting is True:
            raise ConfigError("trainer.sync_bn=true needs CUDA (torch's SyncBatchNorm has no CPU kernel); use "
                              "trainer.sync_bn=auto or false on CPU, where each rank normalizes with its shard's statistics")
        return False
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model, "a bare BatchNorm as the whole model cannot be converted in place"
    return True


def wrap_model(model, ctx: Context, device: torch.device, find_unused_parameters: bool = False):
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)


def reduce_values(values: torch.Tensor, stop: bool, ctx: Context,
                  ckpt_due: bool = False) -> tuple[list[list[float]], bool, bool]:
    """Rows of per-step values (loss, λ) averaged over ranks, whether any rank asked to stop and whether
    any rank's checkpoint clock ran out: one collective and one device→host transfer per flush, so that
    every rank logs the same values, stops at the same step (a signal, a NaN on one shard) and saves a
    checkpoint at the same step (the RNG states are gathered then)."""
    if not ctx.enabled:
        return values.tolist(), stop, ckpt_due
    flags = torch.tensor([float(stop), float(ckpt_due)], device=values.device)
    out = rank_mean(torch.cat([values.reshape(-1).float(), flags])).tolist()
    width = values.shape[1]
    return [out[i:i + width] for i in range(0, len(out) - 2, width)], out[-2] > 0, out[-1] > 0


_NOW = re.compile(r"\$\{now:([^}]*)\}")


def pin_output_dirs(argv: list[str], patterns: dict[str, str], ctx: Context) -> list[str]:
    """Hydra resolves `${now:...}` per process, so every rank would get its own run directory.  Rank 0
    reads the clock once, broadcasts it, and every rank passes the same explicit hydra.run.dir /
    hydra.sweep.dir; ranks > 0 also write no .hydra/ files, no log file and no sweep report."""
    if not ctx.enabled:
        return argv
    stamp = [_dt.datetime.now().isoformat()] if ctx.is_main else [None]
    dist.broadcast_object_list(stamp, src=0)
    now = _dt.datetime.fromisoformat(stamp[0])
    extra = []
    for key, pattern in patterns.items():
        if not any(a.startswith(f"{key}=") for a in argv):
            extra.append(f"{key}={_NOW.sub(lambda m: now.strftime(m.group(1)), pattern)}")
    if not ctx.is_main:
        extra += ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled",
                  "hydra.callbacks={}"]
    return [*argv, *extra]
