"""Hydra callback: run `contnet report` on the sweep directory when a multirun ends.

Enable with `hydra/callbacks=report` on the command line, or in a primary
config's defaults list (`- override hydra/callbacks: report`). Configured by
conf/hydra/callbacks/report.yaml. A failing report logs one warning and never
fails the sweep: the runs themselves are what matters.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

last_sweep_dir: str | None = None   # the sweep that ended last in this process (`contnet train` reads it for its exit code)


class ReportCallback(Callback):
    def __init__(self, enabled: bool = True, targets: Sequence[str] = (), metrics: Sequence[str] = (),
                 ignore: Sequence[str] = (), plots: bool = True, out_dir: str | None = None) -> None:
        self.enabled = enabled
        self.targets = list(targets or [])
        self.metrics = list(metrics or [])
        self.ignore = list(ignore or [])
        self.plots = plots
        self.out_dir = out_dir
        self._sweep_dir: str | None = None

    @staticmethod
    def _resolve_sweep_dir(config: DictConfig) -> str | None:
        try:
            return str(config.hydra.sweep.dir)
        except Exception:  # noqa: BLE001 - a missing or unresolvable key only disables the report
            return None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Resolve now: ${now:...} is cached on this config object, so the sweeper
        # sees the same directory; resolving only at the end could read a later clock.
        self._sweep_dir = self._resolve_sweep_dir(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global last_sweep_dir
        sweep_dir = self._sweep_dir or self._resolve_sweep_dir(config)
        last_sweep_dir = sweep_dir
        if not self.enabled:
            return
        if sweep_dir is None or not Path(sweep_dir).is_dir():
            log.warning("contnet report skipped: sweep directory %s not found", sweep_dir)
            return
        try:
            from contnet.report import make_report, parse_target

            make_report([Path(sweep_dir)], out_dir=self.out_dir or sweep_dir,
                        targets=[parse_target(t) for t in self.targets], metrics=self.metrics,
                        ignore=self.ignore, plots=self.plots)
        except Exception as exc:  # noqa: BLE001 - reporting must never fail a finished sweep
            log.warning("contnet report failed on %s: %s: %s (rerun `contnet report %s`)",
                        sweep_dir, type(exc).__name__, exc, sweep_dir)
