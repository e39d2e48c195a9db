"""The run directory: one run and one writer.

- `RunLock`: `<run dir>/.contnet.lock`, an advisory `flock` held for the whole run by the process that writes
  there (its pid, host and start time inside, for the message).  The system drops the lock when that process
  ends, however it ends (SIGKILL included), so a lock left by a dead process is free by construction; a live
  one refuses a second writer in one line.
- what may start where (`plan_fresh_start`), what "start over" clears (`clear_for_overwrite`), where a resume
  reads its checkpoint (`resume_checkpoint`), and the keys that make a run (`run_identity`): a resume that
  changes one of them is refused.
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
from pathlib import Path

from contnet.errors import ConfigError

log = logging.getLogger("contnet")

LOCK_NAME = ".contnet.lock"
KEEP_ON_OVERWRITE = {LOCK_NAME}     # the new run's own lock (its .hydra/ is written after the clearing)


def check_run_dir(run_dir) -> Path:
    """The run directory must be a directory of its own: run files never go into the working directory."""
    text = "" if run_dir is None else str(run_dir).strip()
    if text in ("", ".") or Path(text).expanduser().resolve() == Path.cwd().resolve():
        raise ConfigError(f"the run directory is {'empty' if not text else repr(text)} (the working directory); "
                          "run files would mix with yours: set hydra.run.dir=<a new directory>, or leave it unset")
    return Path(text).expanduser()


# ---------------------------------------------------------------------------------------------- the lock

_held: dict[str, tuple[int, bool]] = {}   # resolved lock path -> (open fd, directory created by acquire)


def _lock_path(run_dir: Path) -> Path:
    return Path(run_dir).expanduser().resolve() / LOCK_NAME


def holder(run_dir: Path) -> str:
    """Who the lock file says holds it (pid, host, start), for messages."""
    try:
        info = json.loads(_lock_path(run_dir).read_text())
        return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def acquire(run_dir: Path) -> bool:
    """Take the run directory's lock (creating the directory).  True: taken now; False: this process already
    held it.  A lock held by another live process raises ConfigError with one line."""
    path = _lock_path(run_dir)
    if str(path) in _held:
        return False
    created = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP):    # a file system without flock
                log.warning("%s: this file system does not support locks (%s); running without the run-directory "
                            "lock: make sure no other run writes there", path.parent, e.strerror)
                return False
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise ConfigError(f"{path.parent} is in use by another run ({holder(path.parent)}); wait for it to end, "
                              "or choose another hydra.run.dir (the lock is released when that process ends)") from None
        try:                                   # the file we locked may have been released and removed meanwhile
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "since": datetime.datetime.now().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(info) + "\n").encode())
    _held[str(path)] = (fd, created)
    return True


def release(run_dir: Path) -> None:
    """Drop this process's lock on the run directory (no-op when it holds none)."""
    path = _lock_path(run_dir)
    fd, created = _held.pop(str(path), (None, False))
    if fd is None:
        return
    try:
        path.unlink(missing_ok=True)          # before unlocking: a waiter then re-checks the inode and retries
        if created and not any(path.parent.iterdir()):
            path.parent.rmdir()               # a refused run leaves no empty directory behind
    except OSError:
        pass
    os.close(fd)


def release_all() -> None:
    for p in list(_held):
        release(Path(p).parent)


# ---------------------------------------------------------------------------------------------- what starts where

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
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def finished_summary(run_dir: Path) -> dict | None:
    """summary.json of a run that already completed (a resumed rerun of it has nothing to do)."""
    summary = read_summary(run_dir)
    return summary if summary is not None and summary.get("status") == "completed" else None


def is_sweep_dir(path: Path) -> bool:
    """A multirun's directory: Hydra's multirun.yaml, or numbered job folders holding runs."""
    path = Path(path)
    if (path / "multirun.yaml").exists():
        return True
    try:
        return any(p.name.isdigit() and ((p / "summary.json").exists() or (p / "metrics.jsonl").exists())
                   for p in path.iterdir())
    except OSError:
        return False


def sweep_job_folder(run_dir: Path) -> bool:
    """A numbered folder of a sweep's directory: the sweep's own job runs there, never a single run."""
    run_dir = Path(run_dir)
    return run_dir.name.isdigit() and (run_dir.parent / "multirun.yaml").exists()


def plan_fresh_start(tcfg, run_dir: Path, resuming: bool) -> bool:
    """Decide, touching nothing, whether a run may start in run_dir; True: clear its old run files first.
    A run directory holds one run: one that already holds a run (metrics.jsonl, summary.json) is
    continued (trainer.resume), cleared on request (trainer.overwrite=true) or refused; a sweep's directory
    never takes a single run.  (resume together with overwrite is refused by TrainerConfig.check.)"""
    resume, overwrite = getattr(tcfg, "resume", None), getattr(tcfg, "overwrite", False)
    if is_sweep_dir(run_dir):
        raise ConfigError(f"{run_dir} is the directory of a sweep (multirun.yaml or job folders); a single run there "
                          "would hide the sweep's jobs from contnet report: choose another hydra.run.dir")
    if resuming:
        return False
    held = [f for f in ("metrics.jsonl", "summary.json") if (run_dir / f).exists()]
    if not held:
        return False
    if overwrite:
        return True
    if resume == "auto":
        summary = read_summary(run_dir)
        if summary is None or summary.get("status") in ("interrupted", "failed"):   # stopped before its first
            log.warning("trainer.resume=auto: %s has no checkpoint yet; starting over (its run files are cleared)",
                        run_dir)                                                    # checkpoint: nothing to continue
            return True
        raise ConfigError(f"trainer.resume=auto: {run_dir} holds a finished run (status {summary.get('status')}) "
                          "without checkpoints/last.pt; start over with trainer.overwrite=true or choose another run directory")
    raise ConfigError(f"{run_dir} already holds a run ({', '.join(held)}); continue it with trainer.resume=auto, "
                      "start over with trainer.overwrite=true (clears its run files), or choose another hydra.run.dir")


def clear_for_overwrite(run_dir: Path, keep_logs: dict[str, int] | None = None) -> None:
    """Start over: nothing of the old run stays (metrics, summary, checkpoints, .hydra/, adapter/, eval/,
    test_*.txt, plots, W&B/TensorBoard folders, its log).  Kept: the lock, and of a log file this process is
    writing (`keep_logs`: path -> size when this run began) the part this run wrote."""
    keep_logs = keep_logs or {}
    for path in Path(run_dir).iterdir():
        if path.name in KEEP_ON_OVERWRITE:
            continue
        key = str(path.resolve())
        if key in keep_logs:
            data = path.read_bytes()[keep_logs[key]:]
            with open(path, "r+b") as f:       # in place: the log handler keeps appending to this file
                f.write(data)
                f.truncate(len(data))
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def open_log_sizes(run_dir: Path) -> dict[str, int]:
    """Sizes of the log files that this process's logging writes inside run_dir (Hydra's job log), now."""
    root = Path(run_dir).expanduser().resolve()
    out = {}
    for h in logging.getLogger().handlers:
        name = getattr(h, "baseFilename", None)
        if name and Path(name).parent == root:
            try:
                out[name] = os.path.getsize(name)
            except OSError:
                out[name] = 0
    return out


def roll_back_logs(sizes: dict[str, int]) -> None:
    """A refused or no-op run leaves the source run's files as they were: cut what it appended to the logs."""
    for name, size in sizes.items():
        try:
            if size == 0:
                Path(name).unlink(missing_ok=True)
            else:
                os.truncate(name, size)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------- what makes a run

# Keys that may differ between a run and its resume: where the data lives, how long to train, how often to
# evaluate/log/save, where and how fast it runs.  Every other key of the composed config defines the run.
MAY_CHANGE = {"task.data_dir", "task.download", "trainer.max_steps", "trainer.max_epochs", "trainer.eval_every",
              "trainer.log_every", "trainer.checkpoint_every", "trainer.checkpoint_every_s", "trainer.progress",
              "trainer.print_every", "trainer.plot", "trainer.threads", "trainer.device", "trainer.resume",
              "trainer.overwrite", "trainer.compile", "trainer.tf32", "trainer.channels_last", "trainer.flush_denormal",
              "trainer.eval_train", "trainer.diverge_factor"}
IDENTITY_GROUPS = ("task", "model", "peft", "optimizer", "scheduler", "trainer")


def _flat(node, prefix: str) -> dict:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}.{k}"))
        return out
    return {prefix: node}


def run_identity(cfg, world_size: int = 1) -> dict:
    """The composed config's keys that define a run (seed, precision, every task, model, peft, optimizer and
    scheduler key, …), flat: `{"seed": 0, "trainer.precision": "fp32", "optimizer.lr": 0.001, …}`.  The batch is
    the global one (`trainer.batch_size*world_size`): a data-parallel run may resume on another process count."""
    from omegaconf import OmegaConf
    container = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else cfg
    out = {"seed": container.get("seed")}
    for group in IDENTITY_GROUPS:
        out.update(_flat(container.get(group) or {}, group))
    if isinstance(out.get("trainer.batch_size"), int):
        out["trainer.batch_size*world_size"] = out.pop("trainer.batch_size") * world_size
    return {k: v for k, v in out.items() if k not in MAY_CHANGE and not k.startswith("logger.")}


def identity_mismatch(saved: dict | None, now: dict) -> str | None:
    """The first key that makes this config another run than the checkpoint's, as `key=now (the run: saved)`."""
    if not saved:
        return None                           # a checkpoint from before identities were recorded
    order = lambda k: (not k.endswith(".name"), k != "seed", k)     # noqa: E731 - a choice first, then the seed
    for key in sorted(set(saved) | set(now), key=order):
        a, b = saved.get(key, "<unset>"), now.get(key, "<unset>")
        if a != b:
            return f"{key}={b} (the checkpoint's run has {key}={a})"
    return None
