"""checkpoints/last.pt: everything needed to continue a run bitwise (model, optimizer with its
continuation state, scheduler, RNG states, step and position in the data order)."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from contnet.registry import ConfigError
from .io import atomic_torch_save


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def optimizer_kind(optimizer) -> str:
    """The optimizer's class (and, for a continuation optimizer, its inner optimizer and driver): a
    checkpoint of one kind loads into another without an error in torch, but means something else."""
    parts = [type(optimizer).__name__]
    for attr in ("inner", "driver"):
        if hasattr(optimizer, attr):
            parts.append(type(getattr(optimizer, attr)).__name__)
    return "/".join(parts)


def save(path: Path, *, model, optimizer, scheduler, progress: dict, scaler=None) -> None:
    """Written to a temp file and renamed: a kill mid-save leaves the previous last.pt intact."""
    atomic_torch_save({
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),      # continuation optimizers: λ, Δλ, secant history too
        "optimizer_kind": optimizer_kind(optimizer),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(),
        "progress": progress,         # step, epoch, batch_in_epoch, best, elapsed_s
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


def load(ckpt: dict | Path, *, model, optimizer, scheduler, scaler=None) -> dict:
    """Restore everything from a checkpoint (a path, or the dict `read` returned) and give its progress.
    A dict without "model" (see `after_restore`) has had model/optimizer/scheduler restored already."""
    if not isinstance(ckpt, dict):
        ckpt = read(ckpt)
    if "model" in ckpt:
        restore(ckpt, model=model, optimizer=optimizer, scheduler=scheduler)
    if scaler is not None and ckpt.get("scaler") is not None:
        scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    return ckpt["progress"]


def after_restore(ckpt: dict) -> dict:
    """What `load` still needs once `restore` has run: the scaler, RNG states and progress."""
    return {k: ckpt[k] for k in ("scaler", "rng", "progress", "path") if k in ckpt}
