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


def ddp_vs_single(tmp_path, extra: list[str], batch: int = 32) -> float:
    """Run 2 gloo processes with batch B and 1 process with batch 2B; return the worst relative train/loss
    difference (after checking the run-directory rules and that every step was logged once)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CONTNET_DIST_BACKEND": "gloo"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "contnet.cli.main", "train", f"trainer.batch_size={batch}", *COMMON, *extra],
                         cwd=tmp_path, capture_output=True, text=True, timeout=400, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    run_dirs = [p.parent for p in (tmp_path / "outputs").rglob("summary.json")]
    assert len(run_dirs) == 1, run_dirs                      # one run dir, decided by rank 0
    ddp_dir = run_dirs[0]
    assert list((tmp_path / "outputs").glob("*/*")) == [ddp_dir]        # rank 1 made no directory of its own
    summary = json.loads((ddp_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2 and summary["steps"] == STEPS

    run_inprocess([f"trainer.batch_size={2 * batch}", *COMMON, *extra], tmp_path / "single")
    two = [r for r in read_metrics(ddp_dir) if "train/loss" in r]
    one = [r for r in read_metrics(tmp_path / "single") if "train/loss" in r]
    assert [r["step"] for r in two] == [r["step"] for r in one] == list(range(1, STEPS + 1))   # logged once
    worst = max(abs(a["train/loss"] - b["train/loss"]) / abs(b["train/loss"]) for a, b in zip(two, one))
    print(f"2 processes x {batch} vs 1 process x {2 * batch} ({' '.join(extra)}): max relative train/loss "
          f"difference {worst:.2e} over {STEPS} steps")
    val2 = [r["val/loss"] for r in read_metrics(ddp_dir) if "val/loss" in r]
    val1 = [r["val/loss"] for r in read_metrics(tmp_path / "single") if "val/loss" in r]
    assert val2 == pytest.approx(val1, rel=1e-5)
    lam2 = [r["lambda"] for r in two if "lambda" in r]
    assert lam2 == pytest.approx([r["lambda"] for r in one if "lambda" in r], abs=1e-6)
    return worst


def test_two_processes_match_one_process_with_the_doubled_batch(tmp_path):
    assert ddp_vs_single(tmp_path, ["trainer.log_every=7"]) < 1e-5     # flushes off the eval grid too


def test_cadam_two_processes_match_one_process(tmp_path):
    """C-Adam's λ-updates read the gradient-norm window: DDP-averaged gradients give every rank the same Δλ."""
    assert ddp_vs_single(tmp_path, ["task=digits_ae", "optimizer=cadam", "model.width=16"], batch=64) < 1e-4


@pytest.mark.slow
def test_parc_two_processes_match_one_process(tmp_path):
    """PARC's λ is a buffer, which DDP broadcasts from rank 0 at every forward (its default), so the ranks share
    one λ; measured against one process with the global batch: max relative loss difference 2.7e-7 over 30 steps."""
    assert ddp_vs_single(tmp_path, ["task=digits_ae", "optimizer=parc", "model.width=16"], batch=64) < 1e-4


def test_explicit_gpu_index_under_data_parallel_is_one_clear_error():
    """trainer.device=cuda:N under torchrun would put every rank on GPU N; auto/cuda take cuda:LOCAL_RANK."""
    from contnet.engine.distributed import Context, device_for
    from contnet.registry import ConfigError
    with pytest.raises(ConfigError, match="trainer.device=cuda:1 under torchrun with 2 processes"):
        device_for("cuda:1", Context(rank=1, world_size=2, local_rank=1))
    assert device_for("cuda:1", Context()) == "cuda:1"              # a single process keeps its choice
    assert device_for("cpu", Context(rank=1, world_size=2, local_rank=1)) == "cpu"
