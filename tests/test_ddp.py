"""Data-parallel training: 2 CPU processes (torchrun, gloo) with batch B step like 1 process with batch 2B;
rank 0 owns the run directory and the other rank writes nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import read_metrics, run_inprocess

STEPS = 30
COMMON = [f"trainer.max_steps={STEPS}", "trainer.eval_every=10", "model.width=32", "seed=2", "trainer.progress=false",
          "trainer.device=cpu"]


def test_two_processes_match_one_process_with_the_doubled_batch(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CONTNET_DIST_BACKEND": "gloo"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "contnet.cli.main", "train", "trainer.batch_size=32", *COMMON],
                         cwd=tmp_path, capture_output=True, text=True, timeout=400, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    run_dirs = [p.parent for p in (tmp_path / "outputs").rglob("summary.json")]
    assert len(run_dirs) == 1, run_dirs                      # one run dir, decided by rank 0
    ddp_dir = run_dirs[0]
    assert list((tmp_path / "outputs").glob("*/*")) == [ddp_dir]        # rank 1 made no directory of its own
    summary = json.loads((ddp_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2 and summary["steps"] == STEPS

    run_inprocess(["trainer.batch_size=64", *COMMON], tmp_path / "single")
    two = [r for r in read_metrics(ddp_dir) if "train/loss" in r]
    one = [r for r in read_metrics(tmp_path / "single") if "train/loss" in r]
    assert [r["step"] for r in two] == [r["step"] for r in one] == list(range(1, STEPS + 1))   # logged once
    worst = max(abs(a["train/loss"] - b["train/loss"]) / abs(b["train/loss"]) for a, b in zip(two, one))
    print(f"2 processes x 32 vs 1 process x 64: max relative train/loss difference {worst:.2e} over {STEPS} steps")
    assert worst < 1e-5
    val2 = [r["val/loss"] for r in read_metrics(ddp_dir) if "val/loss" in r]
    val1 = [r["val/loss"] for r in read_metrics(tmp_path / "single") if "val/loss" in r]
    assert val2 == pytest.approx(val1, rel=1e-5)
