"""A study's evidence: the raw results every docs table is rendered from (docs/results/<study>/).

Two files per study folder, both written whole by temp file + rename:

- `runs.jsonl`: one JSON object per run, in a stable order (arm, then run path, then seed):
  `run` (the run folder relative to the study folder, "/" separated), `arm` (the study's name for the run's
  variant, or null), `choices` (the composed group choices: task, model, optimizer, peft, scheduler), `overrides`
  (the config overrides that made the run, besides the seed), `seed`, `status`, `final` and `best` (summary.json's
  metrics), `steps`, `wall_s` (the run's wall time), `train_time_s`, plus any study-specific `extra` fields.
- `meta.json`: how the rows were made: the command, git sha (and whether the tree had uncommitted changes), UTC
  date, contnet/torch/python versions, device, CPU count, the load average at the start and at the end, the
  study's wall time.

No absolute machine path goes into either file: run folders are relative to the study folder, and a summary's own
`run_dir` is not copied.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
from pathlib import Path
from typing import Iterable, Sequence

from contnet.engine.io import atomic_write_bytes, atomic_write_json, git_sha, versions

RUNS, META = "runs.jsonl", "meta.json"
CHOICES = ("task", "model", "optimizer", "peft", "scheduler")


def run_row(run_dir: Path, root: Path, overrides: Sequence[str] = (), arm: str | None = None,
            extra: dict | None = None) -> dict:
    """One row from `run_dir`/summary.json (status "missing" when the run never wrote one)."""
    run_dir, root = Path(run_dir), Path(root)
    path = run_dir / "summary.json"
    s = json.loads(path.read_text()) if path.exists() else {"status": "missing"}
    return {"run": run_dir.resolve().relative_to(root.resolve()).as_posix(), "arm": arm,
            "choices": {g: s.get(g) for g in CHOICES}, "overrides": list(overrides), "seed": s.get("seed"),
            "status": s.get("status"), "final": s.get("final", {}), "best": s.get("best", {}),
            "steps": s.get("steps", 0), "wall_s": s.get("wall_time_s"), "train_time_s": s.get("train_time_s"),
            **(extra or {})}


def _order(row: dict) -> tuple:
    return (str(row.get("arm") or ""), row["run"], row.get("seed") if row.get("seed") is not None else -1)


def _rows_text(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in sorted(rows, key=_order))


def write_rows(study_dir: Path, rows: Iterable[dict]) -> Path:
    atomic_write_bytes(Path(study_dir) / RUNS, _rows_text(rows).encode())
    return Path(study_dir) / RUNS


def write(study_dir: Path, rows: Iterable[dict], command: str, env: dict, wall_s: float | None, **extra) -> bool:
    """runs.jsonl and meta.json together; False (nothing written) when the rows are those already there: a rerun
    that did no work leaves the meta.json of the invocation that made the runs (its command, sha, load, time)."""
    study_dir = Path(study_dir)
    text = _rows_text(rows)
    runs, meta = study_dir / RUNS, study_dir / META
    if runs.is_file() and meta.is_file() and runs.read_text() == text:
        return False
    study_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(runs, text.encode())
    write_meta(study_dir, command, env, wall_s, **extra)
    return True


def read_rows(study_dir: Path) -> list[dict]:
    path = Path(study_dir) / RUNS
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _dirty() -> bool | None:
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def environment(device: str = "cpu") -> dict:
    """What a reader needs to judge the numbers: versions, the machine, its load now."""
    return {**versions(), "git_dirty": _dirty(), "device": device, "cpus": os.cpu_count(), "load_start": load(),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def write_meta(study_dir: Path, command: str, env: dict, wall_s: float | None, **extra) -> Path:
    """meta.json: `env` is environment() taken when the study started; the end's load is added here."""
    meta = {"command": command, **env, "load_end": load(),
            "wall_s": None if wall_s is None else round(wall_s, 1), **extra}
    atomic_write_json(Path(study_dir) / META, meta)
    return Path(study_dir) / META


def read_meta(study_dir: Path) -> dict:
    return json.loads((Path(study_dir) / META).read_text())
