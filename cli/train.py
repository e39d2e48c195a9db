"""`contnet train`: the Hydra entry point.  Thin: it validates group choices, then calls
contnet.engine.run.run() in the job's output directory."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from contnet.registry import ConfigError

log = logging.getLogger("contnet")


def check_group_choices(argv: list[str]) -> str | None:
    """One-line message for `group=option` overrides naming an option that does not exist."""
    from contnet.cli.main import config_groups
    groups = config_groups()
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+")
        if key not in groups or value in ("null", ""):
            continue
        for choice in value.split(","):       # multirun sweeps: a,b,c
            if choice not in groups[key]:
                return (f"unknown {key} '{choice}' (in override {arg}); choose one of: {', '.join(groups[key])}")
    return None


def _task_function(cfg) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from contnet.engine.run import run
    hc = HydraConfig.get()
    group = name = None
    if hc.mode == RunMode.MULTIRUN:
        sweep = Path(hc.sweep.dir)
        group = cfg.logger.get("group") or f"{sweep.parent.name}_{sweep.name}"
        name = hc.job.override_dirname or f"job{hc.job.num}"
    else:
        group = cfg.logger.get("group")
    try:
        summary = run(cfg, Path(hc.runtime.output_dir), group=group, name=name)
    except ConfigError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {e}", file=sys.stderr)
        if hc.mode == RunMode.MULTIRUN:
            return None                        # this job failed (summary.json says so); the sweep goes on
        sys.exit(2)
    if summary["status"] == "diverged" and hc.mode != RunMode.MULTIRUN:
        sys.exit(3)
    return summary["final"].get("val/loss")


def main(argv: list[str]) -> int:
    import hydra
    msg = check_group_choices(argv)
    if msg:
        print(f"error: {msg}", file=sys.stderr)
        return 2
    app = hydra.main(version_base="1.3", config_path="pkg://contnet.conf", config_name="config")(_task_function)
    sys.argv = ["contnet train", *argv]
    app()
    return 0
