"""What tests share: builders, runners and assertions, imported by test modules as `from tests.helpers.<module>
import …` (test modules never import each other, and conftest.py holds pytest fixtures and hooks only).

- REPO: the checkout (conf/, bench/, docs/)
- config: `compose` (the product's contnet.conf.compose, memoised: a deep copy per call), `compose_fresh` (composed
  each time), `compose_option` (cached, read-only)
- cli: `run_cli` (a real `python -m contnet.cli.main` process), `cli_inprocess` (the same entry point in this
  process), `BOTH_CLIS` (parametrize a test over cli_inprocess, and run_cli marked slow), `assert_one_line`
- runs: `run_inprocess`, `read_metrics`, `curves`, `comparable`, `SignalAtStep`
- nets: small models, batches and optimizer configs for the continuation and optimizer tests; `train_mse`
- engine: the loop by hand with a chosen precision (`train_with`, `fp16`, `Records`)
- data: files in each dataset's on-disk format (`write_idx`, `write_cifar`, `e2e_dir`), tiny tasks
  (`image_task_pair`, `build_e2e`) and synthetic run directories (`write_run`)
"""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]          # the checkout: conf/, bench/, docs/ …
