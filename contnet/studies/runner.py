"""The one study runner: a study is a list of runs; each run's state is its summary.json; a rerun does only
what is missing; every study leaves the same evidence (artifact.py).

    runs = [Run("adam/s0", ["experiment=tune_digits_ae", "optimizer=adam"], seed=0, arm="adam"), ...]
    rows = execute(runs, root)                # in this process, one after the other
    artifact.write_rows(root, rows)

A run executes in the study's process: Hydra composes its config (`contnet.conf.compose`, as `contnet train`
would from the same overrides) and `contnet.engine.run.run` trains it into `<root>/<run.dir>`, with the run's log
lines in its contnet.log, as `contnet train` writes them.  The same overrides give the same numbers whether a
run is made here or by `contnet train` in its own process (tests/studies/test_runner.py).
"""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from contnet.studies import artifact

DONE = ("completed", "diverged", "pruned")   # a rerun would only repeat these; anything else runs (or resumes)


@dataclass(frozen=True)
class Run:
    dir: str                                  # relative to the study folder
    overrides: tuple[str, ...] | list[str]    # config overrides besides the seed
    seed: int = 0
    arm: str | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)   # study-specific row fields

    def command(self) -> list[str]:
        """The `contnet train` arguments that make the same run."""
        return [*self.overrides, f"seed={self.seed}"]


def status(run_dir: Path) -> str | None:
    """The status in run_dir/summary.json, None when there is none (or it cannot be read)."""
    try:
        return json.loads((Path(run_dir) / "summary.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def is_done(run_dir: Path) -> bool:
    return status(run_dir) in DONE


@contextmanager
def log_file(path: Path):
    """The run's log lines (contnet's loggers) in path, as Hydra's job logging writes them for `contnet train`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def run_in_process(run: Run, root: Path, **hooks) -> dict:
    """Compose the run's config and train it into root/run.dir; `hooks` go to contnet.engine.run.run."""
    from contnet.conf import compose
    from contnet.engine.run import run as train
    run_dir = Path(root) / run.dir
    cfg = compose([*run.command(), "trainer.resume=auto"])     # a run stopped before its end continues
    with log_file(run_dir / "contnet.log"):
        return train(cfg, run_dir, **hooks)


def execute(runs: Iterable[Run], root: Path, do: Callable[[Run, Path], dict] = run_in_process,
            on_done: Callable[[Run, dict], None] | None = None) -> list[dict]:
    """Run what is missing (in order), then return one artifact row per run, done before or now."""
    runs = list(runs)
    for r in runs:
        if not is_done(Path(root) / r.dir):
            summary = do(r, Path(root))
            if on_done is not None:
                on_done(r, summary)
    return rows(runs, root)


def rows(runs: Sequence[Run], root: Path) -> list[dict]:
    return [artifact.run_row(Path(root) / r.dir, root, r.overrides, r.arm, r.extra) for r in runs]
