"""`contnet <command> ...`: a thin dispatcher; each command lives in its own module under contnet.cli."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

COMMANDS = {
    "train": ("contnet.cli.train", "train a model: contnet train [group=option ...] [key=value ...] [-m]"),
    "report": ("contnet.cli.report", "aggregate run directories: contnet report <dir>... [--out DIR]"),
    "eval": ("contnet.cli.eval", "decode and score a finished run again: contnet eval <run dir> [task.test_size=N ...]"),
    "params": ("contnet.cli.params", "count parameters from configs alone: contnet params model=gpt2-medium peft=lora"),
    "tune": ("contnet.studies.tune", "tuned comparison, each arm at its own tuned values: contnet tune experiment=tune_… "
             "[--workers N]"),
    "tables": ("contnet.studies.tables", "render the docs' results tables from docs/results/<study>/: contnet tables [--check]"),
    "reproduce": ("contnet.studies.reproduce", "run the paper claims' sweeps, then REPORT.md: contnet reproduce [--scale cpu|paper]"),
    "solo-study": ("contnet.studies.solo", "the Solo Connection study: contnet solo-study screen|confirm"),
}


def conf_dir() -> Path:
    """The packaged conf/ tree, found without importing contnet.conf (that import stores every option's schema,
    which imports torch and every registered module: `contnet --help` needs none of it)."""
    return Path(importlib.util.find_spec("contnet.conf").origin).parent


def config_groups() -> dict[str, list[str]]:
    """Options of every config group, read from the YAML files of the packaged conf/ tree."""
    root = conf_dir()
    groups = {}
    for d in sorted(root.iterdir(), key=lambda p: p.name):
        if d.is_dir() and not d.name.startswith(("_", ".")) and d.name != "hydra":
            groups[d.name] = sorted(p.name[:-5] for p in d.iterdir() if p.name.endswith(".yaml"))
    return groups


def usage() -> str:
    lines = ["usage: contnet <command> [args]", "", "commands:"]
    lines += [f"  {name:<8} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "config groups (group=option) for `contnet train`:"]
    lines += [f"  {g:<10} {', '.join(opts) or '(none yet)'}" for g, opts in config_groups().items()]
    lines += ["", "`contnet train --help` shows the composed defaults; `contnet train --cfg job` prints the config."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"contnet: unknown command '{cmd}'; choose one of: {', '.join(COMMANDS)} (see contnet --help)",
              file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[cmd][0])
    except ImportError as e:
        print(f"contnet {cmd}: not available in this installation ({e}); reinstall with the needed extra",
              file=sys.stderr)
        return 2
    return run_command(cmd, lambda: module.main(rest))


def run_command(cmd: str, fn) -> int:
    """One line, never a traceback, when a command is stopped by a signal (what it wrote is whole: results are
    written by temp file + rename); logging's own error reports (e.g. a full disk under the log file) stay off
    the console, which gets the one error line."""
    import logging

    from contnet.engine import startup
    from contnet.engine.signals import StopOnSignal
    logging.raiseExceptions = False
    startup.starting()                   # full collections wait while the command imports (engine/startup.py)
    try:
        with StopOnSignal():             # SIGTERM/SIGHUP too: a driver's running child is stopped with it, not orphaned
            return int(fn() or 0)
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", 2)
        print(f"contnet {cmd}: stopped by signal {signum}; rerun the same command to continue (finished runs are kept)",
              file=sys.stderr)
        return 128 + signum
    finally:
        startup.started()


if __name__ == "__main__":
    sys.exit(main())
