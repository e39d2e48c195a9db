"""The one study runner: a study is a list of runs; each run's state is its summary.json; a rerun does only
what is missing; every study leaves the same evidence (artifact.py).

    runs = [Run("adam/s0", ["experiment=tune_digits_ae", "optimizer=adam"], seed=0, arm="adam"), ...]
    rows = execute(runs, root)                # in this process, one after the other
    artifact.write(root, rows, "contnet tune ...", env, wall_s)  # runs.jsonl + meta.json

A run executes in the study's process: Hydra composes its config (`contnet.conf.compose`, as `contnet train`
would from the same overrides) and `contnet.engine.run.run` trains it into `<root>/<run.dir>`, with the run's log
lines in its contnet.log, as `contnet train` writes them.  The same overrides give the same numbers whether a
run is made here or by `contnet train` in its own process (tests/studies/test_runner.py).

Launchers: `execute(..., do=run_in_process)` (the default) or `do=run_subprocess` (`contnet train` in a fresh
process per run, when a run must not share the study's process).  `run_in_process` passes keyword hooks on to
`engine.run.run` (e.g. `on_eval`, a tuner's pruner).  A run stopped by a signal stops the study: execute() raises
Interrupted after the run wrote its summary and checkpoint, so the command ends with one line and 128 + N.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
import subprocess
import sys
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


@contextlib.contextmanager
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


_BASES: dict = {}                 # overrides -> composed config: the few bases a study's runs share (compose_run)


@functools.cache
def _groups() -> frozenset:
    from contnet.cli.main import config_groups
    return frozenset(config_groups())


def split_values(overrides: Sequence[str]) -> tuple[list[str], list]:
    """(the overrides before the trailing plain `key=value` ones, those trailing ones parsed).  Plain: no +/~, no
    config group, no sweep: Hydra applies such an override after composing, by OmegaConf.update(merge=True)."""
    from contnet.cli.checks import parse_override
    groups = _groups()
    parsed = [parse_override(o) for o in overrides]
    i = len(parsed)
    while i > 0:
        o = parsed[i - 1]
        if o.is_add() or o.is_delete() or o.is_force_add() or o.package is not None or o.is_sweep_override() \
                or "/" in o.key_or_group or o.key_or_group.split(".")[0] in groups and "." not in o.key_or_group:
            break
        i -= 1
    return list(overrides[:i]), parsed[i:]


def compose_run(overrides: Sequence[str]):
    """The config `contnet train <overrides>` runs (contnet.conf.compose), composed once per set of shared
    overrides: a study's runs differ in trailing values (a trial's lr, the seed), which are set on a copy as Hydra
    sets them.  ~0.3 s of Hydra composition saved per run; tests/studies/test_runner.py checks the configs equal."""
    import copy

    from omegaconf import OmegaConf

    from contnet.conf import compose
    head, tail = split_values(overrides)
    key = tuple(head)
    if key not in _BASES:
        if len(_BASES) >= 16:
            _BASES.pop(next(iter(_BASES)))
        _BASES[key] = compose(head)
    cfg = copy.deepcopy(_BASES[key])
    try:
        for o in tail:
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
    except Exception:                 # noqa: BLE001 - Hydra composes the whole list and says what is wrong
        return compose(list(overrides))
    return cfg


PLANNED = "study_run.json"        # in each run folder: the overrides and seed the study made it with


def planned(run: Run) -> dict:
    return {"overrides": list(run.overrides), "seed": run.seed}


def mark(run: Run, root: Path) -> None:
    d = Path(root) / run.dir
    d.mkdir(parents=True, exist_ok=True)
    (d / PLANNED).write_text(json.dumps(planned(run), indent=1))


def forget_if_changed(run: Run, root: Path) -> bool:
    """A run folder made with other overrides or another seed than `run` now has (the study's plan changed, e.g.
    more trials moved an arm's best values) is removed, so that the run starts over; True when it was."""
    d = Path(root) / run.dir
    try:
        before = json.loads((d / PLANNED).read_text())
    except (OSError, ValueError):
        return False
    if before == planned(run):
        return False
    shutil.rmtree(d)
    return True


def run_in_process(run: Run, root: Path, quiet: bool = False, **hooks) -> dict:
    """Compose the run's config and train it into root/run.dir; `hooks` go to contnet.engine.run.run.  `quiet`:
    the run's console output (its final table) goes to its stdout.log instead (a study prints its own lines)."""
    from contnet.engine.run import run as train
    run_dir = Path(root) / run.dir
    cfg = compose_run([*run.command(), "trainer.resume=auto"])     # a run stopped before its end continues
    mark(run, root)
    try:
        with log_file(run_dir / "contnet.log"), contextlib.ExitStack() as stack:
            if quiet:
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(run_dir / "stdout.log", "a"))))
            return train(cfg, run_dir, **hooks)
    finally:
        mark(run, root)                                        # a run started over cleared its folder


def run_subprocess(run: Run, root: Path, quiet: bool = True, **hooks) -> dict:
    """The same run as `contnet train` in a fresh process (a launcher for runs that must not share the study's
    process); its output goes to the run's launch.log.  Hooks need this process: none is accepted."""
    if hooks:
        raise TypeError(f"run_subprocess takes no hooks ({', '.join(hooks)}): they need the run in this process")
    run_dir = Path(root) / run.dir
    mark(run, root)
    cmd = [sys.executable, "-m", "contnet.cli.main", "train", *run.command(), "trainer.resume=auto",
           f"hydra.run.dir={run_dir.resolve()}", "hydra.callbacks.report.enabled=false"]
    with open(run_dir / "launch.log", "a", encoding="utf-8") as fh:
        subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    mark(run, root)
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return {"status": None}


def stop_if_interrupted(summary: dict) -> None:
    """A run that a signal stopped stops its study too (its checkpoint stands; a rerun resumes it)."""
    if summary.get("status") == "interrupted":
        from contnet.engine.signals import Interrupted
        raise Interrupted(int(summary.get("signal") or 2))


def execute(runs: Iterable[Run], root: Path, do: Callable[..., dict] = run_in_process,
            on_done: Callable[[Run, dict], None] | None = None, **options) -> list[dict]:
    """Run what is missing (in order), then return one artifact row per run, done before or now.  `options` go
    to `do` (run_in_process: quiet=True, hooks)."""
    runs = list(runs)
    for r in runs:
        if not is_done(Path(root) / r.dir):
            summary = do(r, Path(root), **options)
            if on_done is not None:
                on_done(r, summary)
            stop_if_interrupted(summary)
    return rows(runs, root)


def rows(runs: Sequence[Run], root: Path) -> list[dict]:
    return [artifact.run_row(Path(root) / r.dir, root, r.overrides, r.arm, r.extra) for r in runs]
