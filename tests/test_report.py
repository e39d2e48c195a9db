"""`contnet report` on synthetic run directories with known numbers."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from contnet.report import make_report, parse_target
from contnet.report.grouping import make_labels
from contnet.report.runs import discover_run_dirs
from contnet.report.stats import lower_is_better, mean_std

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(path: Path, *, optimizer: str = "adam", lr: float = 1e-3, seed: int = 0,
              status: str | None = "completed", val_loss=(1.0, 0.5, 0.2), step_times=(0.0, 1.0, 2.0),
              val_acc=None, lam=None, torn_line: bool = False, data_dir: str = "/data/a",
              hydra_dir: bool = True) -> Path:
    """A run directory following docs/ARCHITECTURE.md; metrics logged at steps 0, 10, 20."""
    path.mkdir(parents=True)
    config = {"task": {"name": "digits", "data_dir": data_dir},
              "model": {"name": "mlp", "depth": 2, "width": 64},
              "optimizer": {"name": optimizer, "lr": lr,
                            **({"betas": [0.9, 0.999]} if optimizer == "adam" else {"alpha": 0.99})},
              "trainer": {"max_steps": 20, "batch_size": 32, "resume": None},
              "logger": {"name": "jsonl", "wandb_group": f"g-{seed}"},
              "seed": seed}
    if hydra_dir:
        (path / ".hydra").mkdir()
        (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
        (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}"]))
    rows = []
    for i, loss in enumerate(val_loss):
        row = {"step": 10 * i, "train/loss": loss * 1.1, "val/loss": loss, "time_s": step_times[i], "lr": lr}
        if val_acc is not None:
            row["val/acc"] = val_acc[i]
        if lam is not None:
            row["lambda"] = lam[i]
        rows.append(row)
    lines = [json.dumps(r) for r in rows]
    if torn_line:
        lines.append('{"step": 30, "val/lo')
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if status is not None:
        last = rows[-1]
        finite = [r for r in rows if math.isfinite(r["val/loss"])]
        summary = {"status": status, "steps": last["step"], "wall_time_s": last["time_s"] + 0.5,
                   "trainable_params": 100, "total_params": 100, "seed": seed,
                   "final": {k: v for k, v in last.items() if "/" in k},
                   "best": {"val/loss": min(r["val/loss"] for r in finite)},
                   "task": "digits", "model": "mlp", "optimizer": optimizer, "peft": "none",
                   "versions": {"contnet": "0.1.0"}}
        if status == "failed":
            summary.pop("final"), summary.pop("best")
        (path / "summary.json").write_text(json.dumps(summary))
    return path


@pytest.fixture()
def sweep(tmp_path: Path) -> Path:
    """Two groups of two seeds with known values, plus one run of every other status."""
    root = tmp_path / "multirun" / "2026-11-27" / "12-00-00"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    write_run(root / "0", optimizer="adam", seed=0, val_loss=(1.0, 0.5, 0.2), step_times=(0.0, 1.0, 2.0),
              val_acc=(0.1, 0.8, 0.9), lam=(0.0, 0.5, 1.0))
    write_run(root / "1", optimizer="adam", seed=1, val_loss=(1.0, 0.6, 0.4), step_times=(0.0, 2.0, 4.0),
              val_acc=(0.1, 0.7, 0.8), lam=(0.0, 0.5, 1.0), data_dir="/elsewhere")
    write_run(root / "2", optimizer="rmsprop", seed=0, val_loss=(1.0, 0.8, 0.5), step_times=(0.0, 1.0, 2.0))
    write_run(root / "3", optimizer="rmsprop", seed=1, val_loss=(1.0, 0.9, 0.7), step_times=(0.0, 1.0, 2.0))
    write_run(root / "4", optimizer="rmsprop", seed=2, status="diverged", val_loss=(1.0, float("nan"), float("nan")))
    write_run(root / "5", optimizer="rmsprop", seed=3, status="failed", val_loss=(1.0, 0.95, 0.9))
    write_run(root / "6", optimizer="rmsprop", seed=4, status="interrupted", val_loss=(1.0, 0.55, 0.55))
    write_run(root / "7", optimizer="rmsprop", seed=5, status=None, val_loss=(1.0, 0.99, 0.98), torn_line=True)
    (root / ".submitit").mkdir()  # launcher leftovers must not be mistaken for runs
    return root
