"""checkpoints/last.pt: everything needed to continue a run bitwise (model, optimizer with its
continuation state, scheduler, RNG states, step and position in the data order)."""
from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch

from contnet.registry import ConfigError
from .io import atomic_torch_save

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


def gather_rng(ctx, device: torch.device) -> list[dict] | None:
    """Every rank's RNG state, gathered on rank 0 (a collective: every rank calls it at the same step);
    None on the other ranks and in a single process."""
    if not ctx.enabled:
        return None
    import torch.distributed as dist
    states = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(rank_rng_state(device), states, dst=0)
    return states


def restore_rng(ckpt: dict, ctx, device: torch.device) -> None:
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


def optimizer_kind(optimizer) -> str:
    """The optimizer's class (and, for a continuation optimizer, its inner optimizer and driver): a
    checkpoint of one kind loads into another without an error in torch, but means something else."""
    parts = [type(optimizer).__name__]
    for attr in ("inner", "driver"):
        if hasattr(optimizer, attr):
            parts.append(type(getattr(optimizer, attr)).__name__)
    return "/".join(parts)


def save(path: Path, *, model, optimizer, scheduler, progress: dict, scaler=None,
         rng_ranks: list[dict] | None = None, run: dict | None = None) -> None:
    """Written to a temp file and renamed: a kill mid-save leaves the previous last.pt intact.
    `rng_ranks` (data-parallel runs, from `gather_rng`): every rank's RNG state, index = rank.
    `run`: the keys that make the run (rundir.run_identity); a resume that changes one is refused."""
    extra = {"rng_ranks": rng_ranks} if rng_ranks is not None else {}
    if run is not None:
        extra["run"] = run
    atomic_torch_save({
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),      # continuation optimizers: λ, Δλ, secant history too
        "optimizer_kind": optimizer_kind(optimizer),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(),
        "progress": progress,         # step, epoch, batch_in_epoch, best, elapsed_s
        **extra,
    }, path)


REQUIRED = ("model", "optimizer", "scheduler", "rng", "progress")
FIX = "resume from a run directory whose checkpoint fits this config, or start over with trainer.overwrite=true"


def read(path: Path) -> dict:
    """Load and sanity-check a checkpoint; any problem is one ConfigError line naming the file."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:                 # noqa: BLE001 - torch raises many kinds for a damaged file
        why = " ".join(str(e).split())[:160]
        raise ConfigError(f"checkpoint {path} is corrupt or truncated ({e.__class__.__name__}: {why}); {FIX}") from None
    missing = [k for k in REQUIRED if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ConfigError(f"checkpoint {path} is not a contnet checkpoint (no {', '.join(missing)}); {FIX}")
    try:
        int(ckpt["progress"]["step"])
    except (TypeError, KeyError, ValueError):
        raise ConfigError(f"checkpoint {path} has no valid progress.step; {FIX}") from None
    ckpt["path"] = str(path)
    return ckpt


def _model_mismatch(saved: dict, model) -> str | None:
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if missing or extra:
        return (f"the model differs: {len(missing)} tensor(s) missing there{f' ({missing[0]}, …)' if missing else ''}, "
                f"{len(extra)} unknown here{f' ({extra[0]}, …)' if extra else ''}")
    for k, t in own.items():
        v = saved[k]
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(t.shape) or v.dtype != t.dtype:
            got = f"{tuple(v.shape)} {v.dtype}" if isinstance(v, torch.Tensor) else type(v).__name__
            return f"the model differs: {k} is {got} there, {tuple(t.shape)} {t.dtype} here"
    return None


def restore(ckpt: dict, *, model, optimizer, scheduler) -> None:
    """Check that the checkpoint fits the freshly built model/optimizer/scheduler, then load them.
    Called before the run directory is touched, so a checkpoint that does not fit changes nothing."""
    where = ckpt.get("path", "checkpoint")
    why = _model_mismatch(ckpt["model"], model)
    kind = ckpt.get("optimizer_kind")
    if why is None and kind is not None and kind != optimizer_kind(optimizer):
        why = f"it was written by optimizer {kind}, this config builds {optimizer_kind(optimizer)}"
    if why is None:
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if scheduler is not None and ckpt["scheduler"] is not None:
                scheduler.load_state_dict(ckpt["scheduler"])
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            why = f"{e.__class__.__name__}: {' '.join(str(e).split())[:160]}"
    if why is not None:
        raise ConfigError(f"checkpoint {where} does not fit this config ({why}); {FIX}")


def load(ckpt: dict | Path, *, model, optimizer, scheduler, scaler=None, ctx=None, device=None) -> dict:
    """Restore everything from a checkpoint (a path, or the dict `read` returned) and give its progress.
    A dict without "model" (see `after_restore`) has had model/optimizer/scheduler restored already."""
    if not isinstance(ckpt, dict):
        ckpt = read(ckpt)
    if "model" in ckpt:
        restore(ckpt, model=model, optimizer=optimizer, scheduler=scheduler)
    if scaler is not None and ckpt.get("scaler") is not None:
        scaler.load_state_dict(ckpt["scaler"])
    from .distributed import Context
    restore_rng(ckpt, ctx or Context(), torch.device(device or "cpu"))
    return ckpt["progress"]


def after_restore(ckpt: dict) -> dict:
    """What `load` still needs once `restore` has run: the scaler, RNG states and progress."""
    return {k: ckpt[k] for k in ("scaler", "rng", "rng_ranks", "progress", "path", "run") if k in ckpt}
