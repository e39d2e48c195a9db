"""Aggregate run directories into tables and plots (`contnet report`).

Reads only the run-directory contract (.hydra/config.yaml, metrics.jsonl,
summary.json), so it works on copied folders and never needs W&B.
Names are imported on first use (importing the package loads none of rich or yaml).
"""
from __future__ import annotations

import importlib

_NAMES = {"MetricNotLoggedError": "build", "NoRunsError": "build", "Report": "build", "make_report": "build",
          "Target": "stats", "parse_target": "stats"}
__all__ = list(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"contnet.report.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'contnet.report' has no attribute {name!r}")
