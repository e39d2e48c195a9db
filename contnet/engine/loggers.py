"""Metric sinks.  metrics.jsonl is always on and is the source of truth; W&B and TensorBoard mirror it.

A logger is `log(record: dict)` (record has `step`), `summary(summary: dict)`, `close(status)`.
`logger=<name>` picks a LOGGERS entry: fn(cfg, run_dir, config, group, name) -> an extra logger or None
(`config` is the whole resolved run config; the engine writes metrics.jsonl itself, so jsonl adds nothing).
"""
from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional
from urllib.parse import urlsplit

from contnet.registry import LOGGERS
from contnet.schema import Options, opt, typed

from .io import atomic_write_bytes

log = logging.getLogger("contnet")


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def metrics_gap(path: Path, step: int) -> str | None:
    """What is missing from metrics.jsonl for a resume at `step` (a train/loss record for every step up to it),
    as words; None when every record is there (or the file is gone: the resume then starts it anew)."""
    if step <= 0:
        return None
    if not Path(path).exists():
        return "is missing"
    seen = set()
    for ln in Path(path).read_text(errors="replace").splitlines():
        try:
            rec = json.loads(ln)
            if "train/loss" in rec:
                seen.add(int(rec["step"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    missing = [s for s in range(1, step + 1) if s not in seen]
    if not missing:
        return None
    return (f"has no train record for {len(missing)} of the {step} steps before the checkpoint "
            f"(first missing: step {missing[0]})")


class JsonlLogger:
    """One JSON object per line; buffered and flushed every `flush_every` records and at close.
    The file holds one run: a fresh run (`truncate_after_step=None`) starts it empty, a resumed one
    keeps the records up to the checkpoint's step and appends after them."""

    def __init__(self, path: Path, flush_every: int = 50, truncate_after_step: int | None = None):
        self.path = Path(path)
        if truncate_after_step is not None and self.path.exists():   # resume: drop records past the checkpoint
            keep = [ln for ln in self.path.read_text(errors="replace").splitlines() if _step_of(ln) is not None
                    and _step_of(ln) <= truncate_after_step]   # a line cut by a kill has no step: dropped
            atomic_write_bytes(self.path, "".join(k + "\n" for k in keep).encode())
        self.f = open(self.path, "a+" if truncate_after_step is not None else "w+", encoding="utf-8")
        self.buf: list[str] = []
        self.flush_every = flush_every

    def log(self, record: dict) -> None:
        self.buf.append(json.dumps(record))
        if len(self.buf) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.f.write("\n".join(self.buf) + "\n")
            self.f.flush()
            self.buf.clear()
            self._restore_if_deleted()

    def _restore_if_deleted(self) -> None:
        """metrics.jsonl removed while the run writes it: this process still holds every record (the open file),
        so it is written back in full and the run goes on, with one warning."""
        if os.fstat(self.f.fileno()).st_nlink > 0:
            return
        self.f.seek(0)
        data = self.f.read()
        atomic_write_bytes(self.path, data.encode())
        self.f.close()
        self.f = open(self.path, "a+", encoding="utf-8")
        log.warning("%s was deleted while the run wrote it; written back from the open file (%d records)",
                    self.path, data.count("\n"))

    def summary(self, summary: dict) -> None:
        pass

    def close(self, status: str) -> None:
        self.flush()
        self.f.close()


class TensorBoardLogger:
    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter
        self.w = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def log(self, record: dict) -> None:
        step = record["step"]
        for k, v in record.items():
            if k != "step" and isinstance(v, (int, float)):
                self.w.add_scalar(k, v, step)

    def summary(self, summary: dict) -> None:
        for k, v in summary.get("final", {}).items():
            if isinstance(v, (int, float)):
                self.w.add_scalar(f"final/{k}", v, summary.get("steps", 0))

    def close(self, status: str) -> None:
        self.w.close()


def _has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text() or "wandb" in netrc.read_text()
    except OSError:
        return False


def wandb_server_problem(timeout: float = 3.0) -> str | None:
    """Why the W&B server cannot be reached (a quick TCP connect), or None if it answers or a proxy is set.
    Without this, an unreachable server costs wandb.init's whole retry budget before it gives up."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return None                        # the proxy decides; init_timeout still bounds the wait
    url = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    host, port = url.hostname, url.port or (80 if url.scheme == "http" else 443)
    if not host:
        return None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"{url.scheme}://{host}:{port} unreachable ({e.__class__.__name__})"


class WandbLogger:
    """W&B mirror.  No API key, or a server that cannot be reached → offline, said once (one warning).
    A server that accepts connections but does not answer → init gives up after logger.init_timeout
    seconds, then offline.  Always finish()ed so multirun jobs are separate runs grouped by sweep."""

    def __init__(self, cfg, run_dir: Path, config: dict, group: str | None, name: str | None):
        import wandb
        cfg = typed(WandbConfig, cfg)
        self.wandb = wandb
        mode = cfg.mode or os.environ.get("WANDB_MODE") or "online"
        hint = f"logging offline to {run_dir / 'wandb'} (upload later with `wandb sync`)"
        if mode == "online":
            why = "no API key found" if not _has_wandb_key() else wandb_server_problem()
            if why:
                log.warning("wandb: %s; %s", why, hint)
                mode = "offline"
        kwargs = dict(project=cfg.project, entity=cfg.entity, group=group, name=name,
                      job_type=cfg.job_type, config=config, dir=str(run_dir),
                      tags=list(cfg.tags), reinit="finish_previous")
        settings = wandb.Settings(init_timeout=float(cfg.init_timeout), console="off", silent=True)
        try:
            self.run = wandb.init(mode=mode, settings=settings, **kwargs)
        except Exception as e:  # no answer / server error: degrade to offline, never hang or crash
            if mode == "offline":
                raise
            log.warning("wandb: online init failed (%s); %s", e.__class__.__name__, hint)
            self.run = wandb.init(mode="offline", settings=wandb.Settings(console="off", silent=True), **kwargs)
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def log(self, record: dict) -> None:
        self.run.log(record)

    def summary(self, summary: dict) -> None:
        for split in ("final", "best"):
            for k, v in summary.get(split, {}).items():
                self.run.summary[f"{split}/{k}"] = v
        for k in ("status", "steps", "wall_time_s", "trainable_params", "total_params"):
            self.run.summary[k] = summary.get(k)

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "completed" else 1)


# ---- logger=<name>: typed configs and LOGGERS entries -------------------------------------------------------

@dataclass
class JsonlConfig(Options):
    """logger=jsonl: metrics.jsonl only (always written, whatever the logger)."""


@dataclass
class TensorBoardConfig(Options):
    """logger=tensorboard: TensorBoard event files in <run dir>/tensorboard (plus metrics.jsonl)."""


@dataclass
class WandbConfig(Options):
    """logger=wandb: Weights & Biases, mirrors metrics.jsonl with `step` as the x-axis."""
    project: str = "contnet"
    entity: Optional[str] = None
    # null: $WANDB_MODE, else online; no API key → offline (upload later: wandb sync <run dir>/wandb/offline-run-*)
    mode: Optional[str] = opt(None, choices=("online", "offline", "disabled"))
    group: Optional[str] = None    # null: the sweep directory for multirun jobs (seeds of one sweep share a group)
    job_type: str = "train"
    tags: List[str] = opt([])
    # seconds wandb.init may wait for a server that accepts but does not answer, then offline
    # (an unreachable server is detected by a 3 s connect first; see docs/reliability.md)
    init_timeout: float = opt(8.0, gt=0)


@LOGGERS.register("jsonl", config=JsonlConfig)
def jsonl_logger(cfg: JsonlConfig, run_dir: Path, config: dict, group: str | None, name: str | None):
    return None                    # the engine's own JsonlLogger writes metrics.jsonl for every logger


@LOGGERS.register("tensorboard", config=TensorBoardConfig)
def tensorboard_logger(cfg: TensorBoardConfig, run_dir: Path, config: dict, group: str | None, name: str | None):
    return TensorBoardLogger(run_dir)


@LOGGERS.register("wandb", config=WandbConfig)
def wandb_logger(cfg: WandbConfig, run_dir: Path, config: dict, group: str | None, name: str | None):
    return WandbLogger(cfg, run_dir, config, group, name)
