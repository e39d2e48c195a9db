"""Training runs in this process and what tests read of a run directory."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from tests.helpers.config import compose


def run_inprocess(overrides: list[str], run_dir: Path) -> dict:
    """`contnet train <overrides>` into `run_dir` through the engine's run() in this process; its summary."""
    from contnet.engine.run import run
    cfg = compose(["trainer.progress=false", *overrides])
    return run(cfg, run_dir)


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def curves(run_dir: Path) -> list[dict]:
    """Every record of the run's metrics.jsonl without its wall-clock time."""
    return [{k: v for k, v in r.items() if k != "time_s"} for r in read_metrics(run_dir)]


def comparable(summary: dict) -> dict:
    return {k: summary[k] for k in ("status", "steps", "final", "best")}


class SignalAtStep:
    """A logger that sends this process SIGTERM when it sees a given step (an in-process interruption)."""

    def __init__(self, step: int):
        self.step = step

    def log(self, record):
        if record["step"] == self.step and "train/loss" in record:
            os.kill(os.getpid(), signal.SIGTERM)

    def summary(self, summary):
        pass

    def close(self, status):
        pass
