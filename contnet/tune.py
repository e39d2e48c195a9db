"""`python -m contnet.tune …`: the older entry of the tuner, kept while contnet/reproduce/ still calls it; the tuner
is contnet/studies/tune.py (`contnet tune …`, docs/tuning.md), which takes the same arguments."""
from __future__ import annotations

import subprocess  # noqa: F401 - tests/reproduce replace this module's `subprocess` as they did the old driver's
import sys

from contnet.studies.tune import main, plan_from  # noqa: F401 - the names contnet/reproduce/ imports

if __name__ == "__main__":
    from contnet.cli.main import run_command
    sys.exit(run_command("tune", main))
