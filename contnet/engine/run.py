"""Compose one run from a config: task → model (→ peft) → optimizer → scheduler → fit → summary.

Usable without Hydra: `run(cfg, run_dir)` with an OmegaConf config shaped like conf/config.yaml.
"""
from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from contnet.models.common import count_parameters
from contnet.registry import LOGGERS, MODELS, OPTIMIZERS, PEFTS, SCHEDULERS, TASKS, ConfigError
from contnet.validation import validate
from . import checkpoint, distributed, loop
from .config import TrainerConfig, trainer_config
from .io import atomic_write_json, versions
from .loggers import JsonlLogger
from .progress import final_table
from .setup import Setup

log = logging.getLogger("contnet")


SMALL_MODEL_PARAMS = 1_000_000
DEFAULT_THREADS = torch.get_num_threads()     # the process's own default, before any run changed it


def thread_count(threads, device, n_params: int | None = None) -> int:
    """trainer.threads: an int, null (torch's default) or auto.  auto = 1 thread for a small model on
    CPU: intra-op threads barely help small matmuls, and when another process holds a core they spin
    and slow training by an order of magnitude (measured 14 vs 740 steps/s on digits).
    `n_params=None`: before the model exists; auto then builds with 1 thread on CPU.  Every run sets
    the count itself (never inherits one from an earlier job of a sweep), so a build (the PCA start's
    SVD) sees the same thread count alone or as any job of any sweep."""
    if threads == "auto":
        small = n_params is None or n_params < SMALL_MODEL_PARAMS
        return 1 if device.type == "cpu" and small else DEFAULT_THREADS
    return int(threads) if threads else DEFAULT_THREADS


def set_threads(threads, device, n_params: int | None = None) -> None:
    torch.set_num_threads(thread_count(threads, device, n_params))


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # set either way (no leftover from a previous job in this process), but only when it changes: the call
    # imports torch's compiler modules (~1.2 s of every short run's start on this machine)
    if torch.are_deterministic_algorithms_enabled() != deterministic or (
            deterministic and not torch.is_deterministic_algorithms_warn_only_enabled()):
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if deterministic:
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


RUN_FILES = ("metrics.jsonl", "summary.json", "checkpoints", "curves.png", "tensorboard")


def check_run_dir(run_dir) -> Path:
    """The run directory must be a directory of its own: run files never go into the working directory."""
    text = "" if run_dir is None else str(run_dir).strip()
    if text in ("", ".") or Path(text).expanduser().resolve() == Path.cwd().resolve():
        raise ConfigError(f"the run directory is {'empty' if not text else repr(text)} (the working directory); "
                          "run files would mix with yours: set hydra.run.dir=<a new directory>, or leave it unset")
    return Path(text).expanduser()


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


def read_summary(run_dir: Path) -> dict | None:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def finished_summary(run_dir: Path) -> dict | None:
    """summary.json of a run that already completed (a resumed rerun of it has nothing to do)."""
    summary = read_summary(run_dir)
    return summary if summary is not None and summary.get("status") == "completed" else None


def plan_fresh_start(tcfg, run_dir: Path, resuming: bool) -> bool:
    """Decide, touching nothing, whether a run may start in run_dir; True: clear its old run files first.
    A run directory holds one run: one that already holds a run (metrics.jsonl, summary.json) is
    continued (trainer.resume), cleared on request (trainer.overwrite=true) or refused.
    (resume together with overwrite is refused by TrainerConfig.check.)"""
    tcfg = trainer_config(tcfg)
    resume, overwrite = tcfg.resume, tcfg.overwrite
    if resuming:
        return False
    held = [f for f in ("metrics.jsonl", "summary.json") if (run_dir / f).exists()]
    if not held:
        return False
    if overwrite:
        return True
    if resume == "auto":
        summary = read_summary(run_dir)
        if summary is None:                  # killed before its first checkpoint: nothing to continue
            log.warning("trainer.resume=auto: %s has no checkpoint yet; starting over (its metrics.jsonl is cleared)",
                        run_dir)
            return True
        raise ConfigError(f"trainer.resume=auto: {run_dir} holds a finished run (status {summary.get('status')}) "
                          "without checkpoints/last.pt; start over with trainer.overwrite=true or choose another run directory")
    raise ConfigError(f"{run_dir} already holds a run ({', '.join(held)}); continue it with trainer.resume=auto, "
                      "start over with trainer.overwrite=true (clears its run files), or choose another hydra.run.dir")


def clear_run_files(run_dir: Path) -> None:
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def make_loggers(cfg, run_dir: Path, truncate_after: int | None, group, name) -> list:
    """metrics.jsonl always; `logger=<name>` may add one more (a LOGGERS entry; jsonl adds none)."""
    loggers = [JsonlLogger(run_dir / "metrics.jsonl", truncate_after_step=truncate_after)]
    extra = LOGGERS.get(cfg.logger.name)(cfg.logger, run_dir, OmegaConf.to_container(cfg, resolve=True), group, name)
    if extra is not None:
        loggers.append(extra)
    return loggers


def build(cfg, tcfg: TrainerConfig, seed: int, run_dir: Path, setup: Setup):
    """task → model → peft → placement on the device → optimizer → scheduler; nothing is written.
    Fills setup.steps (the step budget, which the scheduler needs)."""
    task = TASKS.get(cfg.task.name)(cfg.task, seed)
    task.run_dir = run_dir
    model = MODELS.get(cfg.model.name)(cfg.model, task)
    model = PEFTS.get(cfg.peft.name)(cfg.peft, model, task)     # peft=none: the model as built
    setup.place(model, task, tcfg)                # before the optimizer, so its state lives on device
    optimizer = OPTIMIZERS.get(cfg.optimizer.name)(cfg.optimizer, model)
    scheduler = SCHEDULERS.get(cfg.scheduler.name)(cfg.scheduler, optimizer, setup.steps)
    return task, model, optimizer, scheduler


def failure(e: BaseException) -> dict:
    status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
    return {"status": status, "error": f"{e.__class__.__name__}: {' '.join(str(e).split())}"}


def run(cfg: DictConfig, run_dir: Path, group: str | None = None, name: str | None = None) -> dict:
    """One run.  Under torchrun every rank calls this; only rank 0 writes into run_dir.

    Order: every check that can refuse the run (config, run directory, device, precision, checkpoint
    and its fit to the built model) comes before the first write, so a refused run changes no file
    (a ConfigError: one line, exit 2).  From then on every run ends with a summary.json."""
    validate(cfg)                                  # before any work: one line naming the key
    run_dir = check_run_dir(run_dir)
    resolve_auto(cfg)
    if cfg.get("peft") is None:                    # peft=null reads as peft=none
        with open_dict(cfg):
            cfg.peft = {"name": "none"}
    tcfg = trainer_config(cfg.trainer)
    ctx = distributed.context()
    setup = Setup.choose(tcfg, ctx)                # a device or precision this machine lacks: fail now
    device = setup.device
    resume_from, run_dir = resume_checkpoint(tcfg.resume, run_dir)
    restart = plan_fresh_start(tcfg, run_dir, resume_from is not None) if ctx.is_main else False
    ckpt = checkpoint.read(resume_from) if resume_from is not None else None   # corrupt/truncated: fail now
    done = finished_summary(run_dir) if ckpt is not None else None
    seed = int(cfg.seed)
    summary = {"status": "failed", "steps": 0, "seed": seed, "trainable_params": 0, "total_params": 0,
               "task": cfg.task.name, "model": cfg.model.name, "optimizer": cfg.optimizer.name,
               "peft": cfg.peft.name,
               "scheduler": cfg.scheduler.name, "run_dir": str(run_dir), "versions": versions(),
               "final": {}, "best": {}, "wall_time_s": 0.0}

    def start_files() -> None:                      # the first write into the run directory
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            if restart:
                clear_run_files(run_dir)
            (run_dir / "summary.json").unlink(missing_ok=True)    # never leave a stale "completed" behind

    set_threads(tcfg.threads, device)              # before the build: the PCA start's SVD uses them
    seed_everything(seed, tcfg.deterministic)
    try:
        task, model, optimizer, scheduler = build(cfg, tcfg, seed, run_dir, setup)
    except ConfigError:
        raise                                      # bad input: nothing written
    except BaseException as e:
        if ckpt is None and ctx.is_main:           # a resume leaves its source run as it was
            start_files()
            atomic_write_json(run_dir / "summary.json", {**summary, **failure(e)})
        raise
    trainable, total = count_parameters(model)
    summary.update(trainable_params=trainable, total_params=total)
    summary.update(getattr(task, "provenance", {}))   # substitutes on record, e.g. data: synthetic (tasks/e2e.py)
    set_threads(tcfg.threads, device, total)
    if done is not None and done.get("steps", 0) >= setup.steps:
        log.info("%s already completed %d steps: nothing to resume", run_dir, done["steps"])
        return done
    truncate_after = None
    if ckpt is not None:                           # checked against the built objects before any write
        checkpoint.restore(ckpt, model=model, optimizer=optimizer, scheduler=scheduler)
        truncate_after = int(ckpt["progress"]["step"])
        ckpt = checkpoint.after_restore(ckpt)      # fit() restores the RNG states and the progress
    start_files()
    loggers = []
    try:
        if ctx.is_main:
            loggers = make_loggers(cfg, run_dir, truncate_after, group, name)
        summary.update(loop.fit(model=model, task=task, optimizer=optimizer, scheduler=scheduler, tcfg=tcfg,
                                run_dir=run_dir, loggers=loggers, seed=seed, resume_from=ckpt, setup=setup))
        if ctx.is_main and summary.get("status") == "completed":
            from contnet.peft.io import save_for_run
            save_for_run(cfg.peft, model, run_dir)      # <run>/adapter/: what `contnet eval <run>` loads
    except BaseException as e:
        summary.update(failure(e))
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
