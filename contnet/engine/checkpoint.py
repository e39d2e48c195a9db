"""checkpoints/last.pt: everything needed to continue a run bitwise (model, optimizer with its
continuation state, scheduler, RNG states, step and position in the data order)."""
from __future__ import annotations

from pathlib import Path

import torch

from contnet.registry import ConfigError
from .io import atomic_torch_save
from .rng import rng_state


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
        why = "".join(c if c.isprintable() else "?" for c in " ".join(str(e).split())[:160])   # no raw bytes
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


def restore(ckpt: dict, *, model, optimizer, scheduler, scaler=None) -> None:
    """Check that the checkpoint fits the freshly built model/optimizer/scheduler, then load them (and the fp16
    grad scaler).  Called before the run directory is touched, so a checkpoint that does not fit changes nothing.
    The RNG states are restored separately (`restore_rng`), right before training."""
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
    if scaler is not None and ckpt.get("scaler") is not None:
        scaler.load_state_dict(ckpt["scaler"])
