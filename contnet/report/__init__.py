"""Aggregate run directories into tables and plots (`contnet report`).

Reads only the run-directory contract (.hydra/config.yaml, metrics.jsonl,
summary.json), so it works on copied folders and never needs W&B.
"""

from contnet.report.build import NoRunsError, Report, make_report
from contnet.report.stats import Target, parse_target

__all__ = ["NoRunsError", "Report", "Target", "make_report", "parse_target"]
