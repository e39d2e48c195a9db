"""Compose one run from a config: task → model (→ peft) → optimizer → scheduler → fit → summary.

Usable without Hydra: `run(cfg, run_dir)` with an OmegaConf config shaped like conf/config.yaml.
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from contnet.models.common import count_parameters
from contnet.registry import MODELS, OPTIMIZERS, PEFTS, SCHEDULERS, TASKS, ConfigError
from contnet.validation import validate
from . import checkpoint, distributed, loop
from .io import atomic_write_json, versions
from .loggers import JsonlLogger, TensorBoardLogger, WandbLogger
from .progress import final_table

log = logging.getLogger("contnet")


SMALL_MODEL_PARAMS = 1_000_000


def set_threads(threads, device, n_params: int) -> None:
    """trainer.threads: an int, null (torch's default) or auto.  auto = 1 thread for a small model on
    CPU: intra-op threads barely help small matmuls, and when another process holds a core they spin
    and slow training by an order of magnitude (measured 14 vs 740 steps/s on digits)."""
    if threads == "auto":
        threads = 1 if device.type == "cpu" and n_params < SMALL_MODEL_PARAMS else None
    if threads:
        torch.set_num_threads(int(threads))


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def resolve_auto(cfg: DictConfig) -> None:
    """Fill the `auto` switches that depend on other groups (documented in their YAML)."""
    with open_dict(cfg):
        if cfg.model.get("homotopy", False) == "auto":
            cfg.model.homotopy = bool(cfg.optimizer.get("homotopy", False))
        if cfg.task.get("center") == "auto":      # before init=auto resolves: every optimizer sees the same data
            cfg.task.center = cfg.model.get("init") in ("pca", "auto")
        if cfg.model.get("init") == "auto" and not cfg.optimizer.get("homotopy", False):
            cfg.model.init = "default"             # the closed-form λ=0 start is a continuation optimizer's (models/common.py)


def resume_checkpoint(resume, run_dir: Path) -> tuple[Path | None, Path]:
    """trainer.resume: null | auto (this run dir, if it has a checkpoint) | <run dir>."""
    if resume in (None, "", False):
        return None, run_dir
    if resume == "auto":
        ckpt = run_dir / "checkpoints" / "last.pt"
        return (ckpt if ckpt.exists() else None), run_dir
    src = Path(str(resume)).expanduser()
    ckpt = src / "checkpoints" / "last.pt"
    if not ckpt.exists():
        raise ConfigError(f"trainer.resume={resume}: no checkpoint at {ckpt}; give a run directory that has checkpoints/last.pt, or auto")
    return ckpt, src


def finished_summary(run_dir: Path) -> dict | None:
    """summary.json of a run that already completed (a resumed rerun of it has nothing to do)."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if summary.get("status") == "completed" else None


def make_loggers(cfg, run_dir: Path, truncate_after: int | None, group, name) -> list:
    loggers = [JsonlLogger(run_dir / "metrics.jsonl", truncate_after_step=truncate_after)]
    kind = cfg.logger.get("name", "jsonl")
    if kind == "wandb":
        loggers.append(WandbLogger(cfg.logger, run_dir, OmegaConf.to_container(cfg, resolve=True), group, name))
    elif kind == "tensorboard":
        loggers.append(TensorBoardLogger(run_dir))
    elif kind != "jsonl":
        raise ConfigError(f"logger={kind} is unknown; choose jsonl, wandb or tensorboard")
    return loggers


def run(cfg: DictConfig, run_dir: Path, group: str | None = None, name: str | None = None) -> dict:
    """One run.  Under torchrun every rank calls this; only rank 0 writes into run_dir."""
    validate(cfg)                                  # before any work: one line naming the key
    run_dir = Path(run_dir)
    resolve_auto(cfg)
    tcfg = cfg.trainer
    ctx = distributed.context()
    loop.pick_device(distributed.device_for(str(tcfg.device), ctx))   # no CUDA for trainer.device=cuda: fail now
    resume_from, run_dir = resume_checkpoint(tcfg.get("resume"), run_dir)
    done = finished_summary(run_dir) if resume_from is not None else None
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if done is None:
            (run_dir / "summary.json").unlink(missing_ok=True)    # never leave a stale "completed" behind
    seed = int(cfg.seed)
    seed_everything(seed, bool(tcfg.get("deterministic", False)))

    task = TASKS.get(cfg.task.name)(cfg.task, seed)
    task.run_dir = run_dir
    model = MODELS.get(cfg.model.name)(cfg.model, task)
    peft = cfg.get("peft")
    if peft is not None and peft.get("name", "none") != "none":
        model = PEFTS.get(peft.name)(peft, model, task)
    device = loop.pick_device(str(tcfg.device))
    model.to(device)                              # before the optimizer, so its state lives on device
    optimizer = OPTIMIZERS.get(cfg.optimizer.name)(cfg.optimizer, model)
    steps = loop.total_steps(tcfg, loop.steps_per_epoch(task, tcfg, ctx.world_size))
    if done is not None and done.get("steps", 0) >= steps:
        log.info("%s already completed %d steps: nothing to resume", run_dir, done["steps"])
        return done
    if done is not None and ctx.is_main:              # a completed run resumed with a larger budget
        (run_dir / "summary.json").unlink(missing_ok=True)
    scheduler = SCHEDULERS.get(cfg.scheduler.name)(cfg.scheduler, optimizer, steps)
    trainable, total = count_parameters(model)
    set_threads(tcfg.get("threads"), device, total)

    truncate_after = None
    if resume_from is not None:                    # read once: fit() restores from the same dict
        resume_from = checkpoint.read(resume_from)
        truncate_after = int(resume_from["progress"]["step"])
    loggers = make_loggers(cfg, run_dir, truncate_after, group, name) if ctx.is_main else []
    summary = {"status": "failed", "steps": 0, "seed": seed, "trainable_params": trainable, "total_params": total,
               "task": cfg.task.name, "model": cfg.model.name, "optimizer": cfg.optimizer.name,
               "peft": peft.get("name", "none") if peft is not None else "none",
               "scheduler": cfg.scheduler.name, "run_dir": str(run_dir), "versions": versions(),
               "final": {}, "best": {}, "wall_time_s": 0.0}
    try:
        summary.update(loop.fit(model=model, task=task, optimizer=optimizer, scheduler=scheduler, tcfg=tcfg,
                                run_dir=run_dir, loggers=loggers, seed=seed, resume_from=resume_from, ctx=ctx))
    except BaseException as e:
        summary["error"] = f"{e.__class__.__name__}: {e}"
        raise
    finally:
        for lg in loggers:
            lg.summary(summary)
            lg.close(summary["status"])
        if ctx.is_main:
            atomic_write_json(run_dir / "summary.json", summary)   # written last, by temp file + rename
    if ctx.is_main:
        final_table(summary)
    return summary
