"""Compose one run from a config: task → model (→ peft) → optimizer → scheduler → fit → summary.

Usable without Hydra: `run(cfg, run_dir)` with an OmegaConf config shaped like conf/config.yaml.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from contnet.models.common import count_parameters
from contnet.registry import LOGGERS, MODELS, OPTIMIZERS, PEFTS, SCHEDULERS, TASKS, ConfigError
from contnet.validation import validate
from contnet.parallel import context
from . import checkpoint, loop, rundir
from .config import TrainerConfig
from .io import atomic_write_bytes, atomic_write_json, versions
from .loggers import JsonlLogger, metrics_gap
from .progress import final_table
from .rng import restore_rng
from .rundir import check_run_dir, finished_summary, read_summary, resume_checkpoint  # noqa: F401 (read_summary: drivers)
from .setup import Setup
from .signals import Interrupted, StopOnSignal

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
    if any(not isinstance(cfg.get(g), DictConfig) for g in ("task", "model", "optimizer")):
        return                                     # a group is missing: validate() says so
    with open_dict(cfg):
        if cfg.model.get("homotopy", False) == "auto":
            cfg.model.homotopy = bool(cfg.optimizer.get("homotopy", False))
        if cfg.task.get("center") == "auto":      # before init=auto resolves: every optimizer sees the same data
            cfg.task.center = cfg.model.get("init") in ("pca", "auto")
        if cfg.model.get("init") == "auto" and not cfg.optimizer.get("homotopy", False):
            cfg.model.init = "default"             # the closed-form λ=0 start is a continuation optimizer's (models/common.py)


def make_loggers(cfg, logger, run_dir: Path, truncate_after: int | None, group, name) -> list:
    """metrics.jsonl always; `logger=<name>` (its typed config) may add one more (a LOGGERS entry; jsonl adds none)."""
    loggers = [JsonlLogger(run_dir / "metrics.jsonl", truncate_after_step=truncate_after)]
    extra = LOGGERS.get(logger.name)(logger, run_dir, OmegaConf.to_container(cfg, resolve=True), group, name)
    if extra is not None:
        loggers.append(extra)
    return loggers


def build(parts, tcfg: TrainerConfig, seed: int, run_dir: Path, setup: Setup):
    """task → model → peft → placement on the device → optimizer → scheduler; nothing is written.
    `parts`: each group's typed config (what `validate` returns; a composed config works too, typed by the
    builders).  Fills setup.steps (the step budget, which the scheduler needs)."""
    task = TASKS.get(parts["task"].name)(parts["task"], seed)
    task.run_dir = run_dir
    model = MODELS.get(parts["model"].name)(parts["model"], task)
    model = PEFTS.get(parts["peft"].name)(parts["peft"], model, task)     # peft=none: the model as built
    setup.place(model, task, tcfg)                # before the optimizer, so its state lives on device
    optimizer = OPTIMIZERS.get(parts["optimizer"].name)(parts["optimizer"], model)
    scheduler = SCHEDULERS.get(parts["scheduler"].name)(parts["scheduler"], optimizer, setup.steps)
    return task, model, optimizer, scheduler


def failure(e: BaseException) -> dict:
    if isinstance(e, Interrupted):
        return {"status": "interrupted", "signal": e.signum}
    status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
    return {"status": status, "error": f"{e.__class__.__name__}: {' '.join(str(e).split())}"}


def run(cfg: DictConfig, run_dir: Path, group: str | None = None, name: str | None = None,
        hydra_files: dict[str, str] | None = None, on_eval=None) -> dict:
    """One run.  Under torchrun every rank calls this; only rank 0 writes into run_dir, and holds its lock.

    Order: every check that can refuse the run (config, run directory and its lock, device, precision,
    checkpoint and its fit to the built model and to this config's identity) comes before the first write, so a
    refused run changes no file (a ConfigError: one line, exit 2; what the process appended to a log in the
    run directory is cut again).  From then on every run ends with a summary.json, whatever stops it: one
    signal scope covers the whole run (engine/signals.py).  `hydra_files`: `.hydra/` files besides
    config.yaml (the CLI's overrides.yaml, hydra.yaml), written with the run's first write.  `on_eval`: fit()'s
    evaluation callback (a tuner's pruner; True ends the run with status "pruned")."""
    composed = OmegaConf.to_yaml(cfg)              # .hydra/config.yaml: the config as composed
    if cfg.get("peft") is None:                    # peft=null reads as peft=none
        with open_dict(cfg):
            cfg.peft = {"name": "none"}
    resolve_auto(cfg)
    parts = validate(cfg)                          # typed once, here; before any work: one line naming the key
    run_dir = check_run_dir(run_dir)
    tcfg = parts["trainer"]
    ctx = context()
    setup = Setup.choose(tcfg, ctx)                # a device or precision this machine lacks: fail now
    resume_from, run_dir = resume_checkpoint(tcfg.resume, run_dir)
    logs = rundir.open_log_sizes(run_dir)
    files = {"config.yaml": composed, **(hydra_files or {})}
    locked = False
    try:
        locked = rundir.acquire(run_dir) if ctx.is_main else False      # taken at the check, held to the end
        with StopOnSignal() as signals:
            return _run(cfg, parts, setup, run_dir, resume_from, signals, (group, name), files, logs, on_eval)
    except ConfigError:
        rundir.roll_back_logs(logs)
        raise
    finally:
        if locked:
            rundir.release(run_dir)


def _first_write(run_dir: Path, restart: bool, files: dict, logs: dict) -> None:
    """The run's first write: clear a run that is started over, drop a stale summary, write `.hydra/`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if restart:
        rundir.clear_for_overwrite(run_dir, logs)
    (run_dir / "summary.json").unlink(missing_ok=True)    # never leave a stale "completed" behind
    for fname, text in files.items():
        atomic_write_bytes(run_dir / ".hydra" / fname, text.encode())


def _run(cfg, parts, setup, run_dir, resume_from, signals, names, files, logs, on_eval=None) -> dict:
    ctx, seed, is_main, tcfg = setup.ctx, int(cfg.seed), setup.ctx.is_main, parts["trainer"]
    restart = rundir.plan_fresh_start(tcfg, run_dir, resume_from is not None) if is_main else False
    ckpt = checkpoint.read(resume_from) if resume_from is not None else None   # corrupt/truncated: fail now
    identity = rundir.run_identity(cfg, ctx.world_size)
    if ckpt is not None:
        check_continues(ckpt, identity, run_dir, is_main)
    summary = {"status": "failed", "steps": 0, "seed": seed, "trainable_params": 0, "total_params": 0,
               **{g: cfg[g].name for g in ("task", "model", "optimizer", "peft", "scheduler")},
               "run_dir": str(run_dir), "versions": versions(), "final": {}, "best": {}, "wall_time_s": 0.0}
    set_threads(tcfg.threads, setup.device)        # before the build: the PCA start's SVD uses them
    seed_everything(seed, tcfg.deterministic)
    try:
        task, model, optimizer, scheduler = build(parts, tcfg, seed, run_dir, setup)
    except ConfigError:
        raise                                      # bad input: nothing written
    except BaseException as e:
        if ckpt is not None or not is_main:        # a resume leaves its source run as it was
            if isinstance(e, Interrupted):
                return {**summary, **failure(e)}
            raise
        with signals.shielded():
            _first_write(run_dir, restart, files, logs)
            atomic_write_json(run_dir / "summary.json", {**summary, **failure(e)})
        if isinstance(e, Interrupted):
            return {**summary, **failure(e)}
        raise
    trainable, total = count_parameters(model)
    summary.update(trainable_params=trainable, total_params=total)
    summary.update(getattr(task, "provenance", {}))   # substitutes on record, e.g. data: synthetic (tasks/e2e.py)
    set_threads(tcfg.threads, setup.device, total)
    done = finished_summary(run_dir) if ckpt is not None else None
    if done is not None and done.get("steps", 0) >= setup.steps:
        log.info("%s already completed %d steps: nothing to resume", run_dir, done["steps"])
        rundir.roll_back_logs(logs)
        return done
    if ckpt is not None:                           # checked against the built objects before any write
        checkpoint.restore(ckpt, model=model, optimizer=optimizer, scheduler=scheduler, scaler=setup.precision.scaler)
    if is_main:
        with signals.shielded():                   # milliseconds; a signal here is acted on by the loop's first step
            _first_write(run_dir, restart, files, logs)
    objs = {"task": task, "model": model, "optimizer": optimizer, "scheduler": scheduler}
    return _train(cfg, parts, setup, run_dir, ckpt, signals, names, identity, objs, summary, on_eval)


def check_continues(ckpt: dict, identity: dict, run_dir: Path, is_main: bool) -> None:
    """A resume continues the checkpoint's run: the same keys that make a run, and every record up to its step."""
    why = rundir.identity_mismatch(ckpt.get("run"), identity)
    if why:
        raise ConfigError(f"trainer.resume: {why}; a resume continues the same run: resume with the run's values, "
                          f"or start a new run (another hydra.run.dir, or trainer.overwrite=true in {run_dir})")
    gap = metrics_gap(run_dir / "metrics.jsonl", int(ckpt["progress"]["step"])) if is_main else None
    if gap:
        raise ConfigError(f"trainer.resume: {run_dir}/metrics.jsonl {gap}; the resumed run would have a gap: "
                          "restore the file, or start over with trainer.overwrite=true")


def _train(cfg, parts, setup, run_dir, ckpt, signals, names, identity, objs, summary, on_eval=None) -> dict:
    """The loggers, the restored RNG states (last: nothing may draw after them), fit(), the adapter; summary.json
    last, whatever ended the run."""
    is_main, loggers = setup.ctx.is_main, []
    state = loop.RunState.of_checkpoint(ckpt["progress"]) if ckpt is not None else None
    try:
        if is_main:
            loggers = make_loggers(cfg, parts["logger"], run_dir, state.step if state else None, *names)
        if ckpt is not None:
            restore_rng(ckpt, setup.ctx, setup.device)
        loop.fit(**objs, tcfg=parts["trainer"], setup=setup, run_dir=run_dir, loggers=loggers, seed=summary["seed"], state=state,
                 signals=signals, identity=identity, into=summary, on_eval=on_eval)
        if is_main and summary.get("status") == "completed":
            from contnet.peft.io import save_for_run
            save_for_run(parts["peft"], objs["model"], run_dir)      # <run>/adapter/: what `contnet eval <run>` loads
    except Interrupted as e:                        # in writing the outputs: the checkpoint of fit() stands
        summary.update(failure(e))
    except BaseException as e:
        summary.update(failure(e))
        raise
    finally:
        with signals.shielded():
            for lg in loggers:
                lg.summary(summary)
                lg.close(summary["status"])
            if is_main:
                atomic_write_json(run_dir / "summary.json", summary)   # written last, by temp file + rename
    if is_main:
        final_table(summary)
    return summary
