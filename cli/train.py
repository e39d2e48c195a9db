"""`contnet train`: the Hydra entry point.  Thin: it checks the overrides (one readable line per
mistake, before anything is written), pins the run directory under torchrun, then calls
contnet.engine.run.run() in the job's output directory.

Exit codes: 0 completed; 1 failed (one line; the traceback goes to the run's contnet.log); 2 a configuration
error; 3 diverged; 128+signal when
interrupted by SIGINT/SIGTERM (a checkpoint is saved; resume with trainer.resume=<run dir>).
A multirun runs every job even when some fail or diverge, then exits 1 (3 when every bad job diverged)
with one line counting them; a failed job still gets a summary.json with status failed.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from contnet.cli.checks import MULTIRUN_FLAGS, check_overrides, full_errors, one_line, sweep_overrides
from contnet.registry import ConfigError

log = logging.getLogger("contnet")

EXIT_FAILED, EXIT_CONFIG, EXIT_DIVERGED = 1, 2, 3


_jobs_here: list[str] = []        # statuses of the sweep jobs this process ran (the basic launcher's)


def _discard_if_untouched(run_dir: Path) -> None:
    """A single run that failed its input checks keeps nothing: drop the folder if only Hydra wrote in it."""
    try:
        if run_dir.is_dir() and all(p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir()):
            import shutil
            shutil.rmtree(run_dir)
    except OSError:
        pass


def _traceback_to_log_file() -> None:
    """The traceback of a failed sweep job goes to its log file; the console gets one line."""
    import traceback
    text = traceback.format_exc()
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.stream.write(text)
            handler.flush()


def _failed_job_summary(cfg, run_dir: Path, error: str) -> dict:
    """summary.json of a sweep job that failed before the engine wrote one, so that `contnet report`
    counts it as failed (not as still running).  A directory that holds run files already (the engine's
    own failed summary, or another run the engine refused to touch) is left exactly as it is."""
    import json

    from contnet.engine.io import atomic_write_json
    summary = {"status": "failed", "error": error, "steps": 0, "seed": cfg.get("seed"), "run_dir": str(run_dir),
               "final": {}, "best": {}, "wall_time_s": 0.0,
               **{g: str(cfg[g].get("name")) for g in ("task", "model", "optimizer", "peft", "scheduler")
                  if cfg.get(g) is not None}}
    path = run_dir / "summary.json"
    if path.exists() or (run_dir / "metrics.jsonl").exists():
        try:
            on_disk = json.loads(path.read_text())
        except (OSError, ValueError):
            on_disk = None
        bad = isinstance(on_disk, dict) and on_disk.get("status") in ("failed", "diverged", "interrupted")
        return on_disk if bad else summary
    atomic_write_json(path, summary)
    return summary


def _hydra_files(hc) -> dict[str, str]:
    """`.hydra/` besides config.yaml, as Hydra itself would write them (output_subdir is null: the engine writes
    them with the run's first write)."""
    from omegaconf import OmegaConf
    return {"overrides.yaml": OmegaConf.to_yaml(hc.overrides.task),
            "hydra.yaml": OmegaConf.to_yaml(OmegaConf.create({"hydra": OmegaConf.to_container(hc, resolve=False)}))}


def _what_failed(e: Exception) -> str:
    """The failure in words; the machine's own problems (a full disk, a read-only folder) name the file and the fix."""
    import errno
    fixes = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space",
             errno.EROFS: "make it writable", errno.EACCES: "make it writable", errno.EPERM: "make it writable"}
    if isinstance(e, OSError) and e.errno in fixes:
        where = f" writing {e.filename}" if e.filename else ""
        return f"{e.strerror}{where}; {fixes[e.errno]}, then continue with trainer.resume=auto"
    return f"{e.__class__.__name__}: {one_line(e)}"


def _task_function(cfg) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from contnet.engine.run import run
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    group = name = None
    if multirun:
        sweep = Path(hc.sweep.dir)
        group = cfg.logger.get("group") or f"{sweep.parent.name}_{sweep.name}"
        name = hc.job.override_dirname or f"job{hc.job.num}"
        if cfg.trainer.get("plot") == "auto":          # a sweep's curves are the report's (contnet report)
            cfg.trainer.plot = False
    else:
        group = cfg.logger.get("group")
    try:
        summary = run(cfg, run_dir, group=group, name=name, hydra_files=_hydra_files(hc))
    except ConfigError as e:
        if full_errors():
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        if not multirun:
            _discard_if_untouched(run_dir)
            sys.exit(EXIT_CONFIG)
        summary = _failed_job_summary(cfg, run_dir, f"ConfigError: {one_line(e)}")   # the sweep goes on
    except Exception as e:                     # a bug or the machine, not the input: one line, traceback in the log
        if full_errors():
            raise
        _traceback_to_log_file()
        print(f"error: {f'job {hc.job.num} ' if multirun else ''}({run_dir}) failed: {_what_failed(e)} "
              f"(traceback in {run_dir / 'contnet.log'}; HYDRA_FULL_ERROR=1 prints it)", file=sys.stderr)
        if not multirun:
            sys.exit(EXIT_FAILED)
        summary = _failed_job_summary(cfg, run_dir, f"{e.__class__.__name__}: {one_line(e)}")
    if summary["status"] == "interrupted":     # a signal stops the whole sweep, not just this job
        print(f"error: ({run_dir}) interrupted by signal {summary.get('signal')} at step {summary.get('steps')}; "
              "continue it with trainer.resume=auto (the same hydra.run.dir)", file=sys.stderr)
        sys.exit(128 + int(summary.get("signal") or 2))
    if multirun:
        _jobs_here.append(summary["status"])
    elif summary["status"] == "diverged":
        sys.exit(EXIT_DIVERGED)
    if summary["status"] != "completed":       # a (minimising) sweeper must not rank a diverged job by its last val/loss
        return float("inf")
    return summary["final"].get("val/loss")


def sweep_exit_code(statuses: list[str], sweep_dir: str | None) -> int:
    """0 when every job completed; else one line on stderr and 3 (all diverged) or 1."""
    from collections import Counter
    bad = Counter(s for s in statuses if s != "completed")
    if not bad:
        return 0
    where = f"; see {sweep_dir}" if sweep_dir else ""
    print(f"error: {sum(bad.values())} of {len(statuses)} jobs did not complete "
          f"({', '.join(f'{n} {s}' for s, n in sorted(bad.items()))}){where}", file=sys.stderr)
    return EXIT_DIVERGED if set(bad) == {"diverged"} else EXIT_FAILED


def _sweep_statuses() -> tuple[list[str], str | None]:
    """Statuses of the sweep that just ended: from this process, or (jobs in other processes) its directory."""
    from contnet.report import callback
    sweep_dir = callback.last_sweep_dir
    if _jobs_here or sweep_dir is None:
        return list(_jobs_here), sweep_dir
    from contnet.report.runs import load_runs
    return [r.status for r in load_runs([Path(sweep_dir)])], sweep_dir


def main(argv: list[str]) -> int:
    from contnet.engine import rundir
    from contnet.engine.signals import Interrupted, StopOnSignal
    quiet = os.environ.get("RANK", "0") != "0"        # under torchrun, rank 0 alone reports config errors
    flags = MULTIRUN_FLAGS                            # anywhere on the line (Hydra's parser wants it first)
    argv = [a for a in argv if a in flags] + [a for a in argv if a not in flags]
    try:
        with StopOnSignal():                          # a signal before the run starts: one line, nothing written
            return _main(argv, quiet)
    except ConfigError as e:
        if full_errors():
            raise
        if not quiet:
            print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_CONFIG
    except Interrupted as e:
        print(f"error: stopped by signal {e.signum} outside a run (nothing of a run was lost: a run ends with its "
              "summary.json, an interrupted one resumes with trainer.resume=auto)", file=sys.stderr)
        return 128 + e.signum
    finally:
        rundir.release_all()                          # the locks the pre-flight check took


def _main(argv: list[str], quiet: bool) -> int:
    from contnet.engine import distributed
    composed = check_overrides(argv)
    ctx = distributed.init_from_env()
    try:
        from contnet.report import callback
        _jobs_here.clear()
        callback.last_sweep_dir = None
        plain = all(a in MULTIRUN_FLAGS or not a.startswith("-") for a in argv)     # overrides (and -m) only
        if plain and composed is not None and composed.mode is None and not ctx.enabled:
            multirun = any(a in MULTIRUN_FLAGS for a in argv)
            if not multirun and sweep_overrides(argv):
                raise ConfigError(f"{sweep_overrides(argv)[0]}: a sweep needs -m (--multirun: one job per value); "
                                  "give one value for a single run")
            _launch(composed, argv)
        else:                                      # info flags, a mode set in the config, torchrun: Hydra's main
            _hydra_main(argv, ctx)
    finally:
        distributed.shutdown()
    if any(a in MULTIRUN_FLAGS for a in argv) or "hydra.mode=MULTIRUN" in argv:
        statuses, sweep_dir = _sweep_statuses()
        return sweep_exit_code(statuses, sweep_dir) if not quiet else 0
    return 0


def _hydra_main(argv: list[str], ctx) -> None:
    """Hydra's own main on this command line (it composes the config again: once for the mode, once to run)."""
    import hydra

    from contnet.engine import distributed
    if ctx.enabled:
        from importlib import resources

        from omegaconf import OmegaConf
        raw = OmegaConf.to_container(OmegaConf.create(
            (resources.files("contnet.conf") / "config.yaml").read_text()), resolve=False)["hydra"]
        argv = distributed.pin_output_dirs(argv, {"hydra.run.dir": raw["run"]["dir"],
                                                  "hydra.sweep.dir": raw["sweep"]["dir"]}, ctx)
    app = hydra.main(version_base="1.3", config_path="pkg://contnet.conf", config_name="config")(_task_function)
    sys.argv = ["contnet train", *argv]
    app()


def _launch(composed, argv: list[str]) -> None:
    """What Hydra's main does with a plain command line (hydra/_internal/utils.py `_run_hydra`), less its
    compositions of the config: the pre-flight check composed them already (cli/checks.py `Composed`).  A run
    runs its config; a sweep runs Hydra's multirun from its master config, each job with the config the check
    composed for it."""
    from hydra import initialize_config_module
    from hydra._internal.utils import run_and_report
    from hydra.core.global_hydra import GlobalHydra
    with initialize_config_module(config_module="contnet.conf", version_base="1.3", job_name="contnet"):
        app = GlobalHydra.instance().hydra
        if any(a in MULTIRUN_FLAGS for a in argv):
            run_and_report(lambda: _run_sweep(app, composed.config, composed.jobs))
        else:
            run_and_report(lambda: _run_job(app, composed.config))


class _Composed:
    """Hydra's config loader, except that a sweep job the pre-flight check composed is handed its config (a copy:
    a job may change its config) instead of being composed again by the sweeper's batch check
    (`Sweeper.validate_batch_is_legal`) and again by the launcher (`BasicLauncher.launch`); a job it did not
    compose (another sweeper's values) is composed by Hydra's loader.  Sent to another process (a joblib or
    submitit launcher's worker), it is Hydra's loader alone: a job's config is composed where the job runs (its
    hydra.runtime.cwd, its environment), as before."""

    def __init__(self, loader, jobs: dict):
        self.loader, self.jobs = loader, jobs

    def __reduce__(self):
        return _Composed, (self.loader, {})

    def load_sweep_config(self, master_config, sweep_overrides):
        import copy
        cfg = self.jobs.get(tuple(sweep_overrides))
        if cfg is None:
            return self.loader.load_sweep_config(master_config, sweep_overrides)
        return copy.deepcopy(cfg)

    def __getattr__(self, name):                 # the rest of Hydra's loader (search path, group listing, ...)
        if name.startswith("__") or name in ("loader", "jobs"):
            raise AttributeError(name)
        return getattr(self.loader, name)


def _run_sweep(app, master, jobs: dict) -> None:
    """Hydra's multirun (hydra/_internal/hydra.py `Hydra.multirun`) of the master config the check composed:
    Hydra's logging, the callbacks, the sweeper, whose batch check and launcher get each job's config from the
    check (`_Composed`): a sweep composes each job once."""
    from hydra._internal.callbacks import Callbacks
    from hydra.core.plugins import Plugins
    from hydra.core.utils import configure_log
    from hydra.types import HydraContext
    from omegaconf import OmegaConf
    configure_log(master.hydra.hydra_logging, master.hydra.verbose)
    callbacks = Callbacks(master)
    callbacks.on_multirun_start(config=master, config_name="config")
    context = HydraContext(config_loader=_Composed(app.config_loader, jobs), callbacks=callbacks)
    sweeper = Plugins.instance().instantiate_sweeper(config=master, hydra_context=context,
                                                     task_function=_task_function)
    sweeper.sweep(arguments=OmegaConf.to_container(master.hydra.overrides.task, resolve=False))
    callbacks.on_multirun_end(config=master, config_name="config")


def _run_job(app, cfg) -> None:
    """Hydra's run (hydra/_internal/hydra.py `Hydra.run`) of a composed config: the mode its main sets, Hydra's
    logging, the callbacks, then Hydra's job runner (output directory, job logging, `_task_function`)."""
    from hydra._internal.callbacks import Callbacks
    from hydra.core.utils import configure_log, run_job
    from hydra.types import HydraContext, RunMode
    from omegaconf import open_dict, read_write
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.mode = RunMode.RUN
        cfg.hydra.overrides.hydra.append("hydra.mode=RUN")     # as Hydra's main records the mode it chose
    configure_log(cfg.hydra.hydra_logging, cfg.hydra.verbose)
    callbacks = Callbacks(cfg)
    callbacks.on_run_start(config=cfg, config_name="config")
    ret = run_job(task_function=_task_function, config=cfg, job_dir_key="hydra.run.dir", job_subdir_key=None,
                  hydra_context=HydraContext(config_loader=app.config_loader, callbacks=callbacks))
    callbacks.on_run_end(config=cfg, config_name="config", job_return=ret)
    _ = ret.return_value                           # the job's exception, raised
