"""Find run directories and load them through the run-directory contract only.

A run directory is any directory holding `.hydra/config.yaml` or `summary.json`
(docs/ARCHITECTURE.md). Nothing here talks to W&B or needs the original machine:
copied folders work. Broken or partial runs are loaded as far as they go and
marked, never raised on, because a sweep with a crashed job still deserves a report.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml


log = logging.getLogger("contnet.report")

# Statuses written by the engine, plus one for runs that never wrote summary.json
# (still running, killed by the OS or the scheduler, or crashed before the end).
STATUSES = ("completed", "diverged", "failed", "interrupted", "incomplete")


@dataclass
class Run:
    path: Path
    config: dict[str, Any]  # flattened composed config: {"optimizer.lr": 0.001, ...}
    overrides: list[str]
    summary: dict[str, Any] | None
    metrics: list[dict[str, Any]] = field(default_factory=list)  # rows of metrics.jsonl

    @property
    def status(self) -> str:
        if self.summary is None:
            return "incomplete"
        status = str(self.summary.get("status", "incomplete"))
        return status if status in STATUSES else "failed"

    @property
    def seed(self) -> Any:
        if "seed" in self.config:
            return self.config["seed"]
        return (self.summary or {}).get("seed")

    def curve(self, key: str, x: str = "step") -> tuple[list[float], list[float]]:
        """(x, y) for every logged row that has both keys; non-finite y kept as NaN."""
        xs, ys = [], []
        for row in self.metrics:
            if key in row and x in row and _is_number(row[x]) and _is_number(row[key]):
                y = float(row[key])
                xs.append(float(row[x]))
                ys.append(y if math.isfinite(y) else math.nan)
        return xs, ys

    def metric_keys(self) -> set[str]:
        keys: set[str] = set()
        for row in self.metrics:
            keys.update(k for k, v in row.items() if _is_number(v))
        return keys


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_run_dir(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").is_file() or (path / "summary.json").is_file()


def discover_run_dirs(roots: Iterable[Path]) -> list[Path]:
    """Every run directory at or below the roots, sorted, without duplicates.

    Inside a run directory the walk goes on only into numbered folders (a sweep's jobs: a single run that an
    older contnet let into a sweep's directory does not hide them), and it skips hidden folders such as
    `.submitit/` and `.hydra/`, and `wandb/` (its own files, not ours).
    """
    found: set[Path] = set()
    for root in roots:
        for dirpath, dirnames, _ in os.walk(Path(root)):
            here = Path(dirpath)
            if is_run_dir(here):
                found.add(here.resolve())
                dirnames[:] = [d for d in dirnames if d.isdigit()]
                continue
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "wandb"]
    return sorted(found, key=_natural_key)


def _natural_key(path: Path) -> list[Any]:
    # multirun job folders are 0, 1, ..., 10: sort them as numbers
    return [int(p) if p.isdigit() else p for p in path.parts]


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys; lists become tuples so values stay hashable."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict) and value:
                out.update(flatten(value, name))
            else:
                out[name] = _hashable(value)
        return out
    return {prefix: _hashable(tree)} if prefix else {}


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    return value


def _read_yaml(path: Path) -> Any:
    # Plain YAML, not OmegaConf: interpolations such as ${hydra:...} stay strings,
    # which is what grouping wants and cannot fail outside a Hydra app.
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except (OSError, yaml.YAMLError):
        return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of metrics.jsonl.  A bad row (a torn last line of a killed run, binary junk, a JSON value
    without `step`) is skipped with one warning per file naming file:line and how many more there were."""
    rows: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    try:
        with open(path, "rb") as fh:
            for n, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    bad.append((n, "not UTF-8 text"))
                    continue
                except ValueError:
                    bad.append((n, "not JSON"))
                    continue
                if isinstance(row, dict) and "step" in row:
                    rows.append(row)
                else:
                    bad.append((n, "not a JSON object with a step"))
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("%s: cannot read (%s); the run has no curves", path, exc.strerror or exc)
    if bad:
        more = f" and {len(bad) - 1} more bad line{'s' if len(bad) > 2 else ''}" if len(bad) > 1 else ""
        log.warning("%s:%d: %s, skipped%s (%d rows read)", path, bad[0][0], bad[0][1], more, len(rows))
    return rows


def load_run(path: Path) -> Run:
    path = Path(path)
    summary = _read_json(path / "summary.json")
    if summary is None and (path / "summary.json").exists():
        log.warning("%s: unreadable summary.json; the run counts as incomplete", path / "summary.json")
    raw_config = _read_yaml(path / ".hydra" / "config.yaml")
    if isinstance(raw_config, dict):
        config = flatten(raw_config)
    else:
        # No Hydra folder (e.g. only summary.json was copied): the summary's
        # composed choices are the best description of the run we have.
        config = {}
        for key in ("task", "model", "optimizer", "peft"):
            if summary and summary.get(key) is not None:
                config[f"{key}.name"] = summary[key]
        if summary and "seed" in summary:
            config["seed"] = summary["seed"]
    overrides = _read_yaml(path / ".hydra" / "overrides.yaml")
    overrides = [str(o) for o in overrides] if isinstance(overrides, list) else []
    return Run(path=path, config=config, overrides=overrides, summary=summary,
               metrics=read_metrics(path / "metrics.jsonl"))


def load_runs(roots: Iterable[Path]) -> list[Run]:
    return [load_run(p) for p in discover_run_dirs(roots)]
