"""checkpoints/last.pt: everything needed to continue a run bitwise (model, optimizer with its
continuation state, scheduler, RNG states, step and position in the data order)."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

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


def save(path: Path, *, model, optimizer, scheduler, progress: dict, scaler=None) -> None:
    """Written to a temp file and renamed: a kill mid-save leaves the previous last.pt intact."""
    atomic_torch_save({
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),      # continuation optimizers: λ, Δλ, secant history too
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(),
        "progress": progress,         # step, epoch, batch_in_epoch, best, elapsed_s
    }, path)


def read(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def load(ckpt: dict | Path, *, model, optimizer, scheduler, scaler=None) -> dict:
    """Restore everything from a checkpoint (a path, or the dict `read` returned) and give its progress."""
    if not isinstance(ckpt, dict):
        ckpt = read(ckpt)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt["scheduler"] is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and ckpt.get("scaler") is not None:
        scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    return ckpt["progress"]
