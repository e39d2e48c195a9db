"""Data-parallel training: 2 CPU processes (torchrun, gloo) with batch B step like 1 process with batch 2B;
rank 0 owns the run directory and the other rank writes nothing.

Two processes on a 2-core machine take 10-20 s a run: the fast suite keeps one torchrun run (plain Adam, which
also checks the run-directory rules) and the in-process pieces (the unused-parameter probe, SyncBatchNorm's
conversion, the device rule; the collectives in one process: tests/test_parallel.py; the global token mean
over shards: tests/tasks/test_base.py); every other torchrun run is `slow`."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.runs import read_metrics, run_inprocess


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


# the bound README.md states for 2 gloo processes vs 1 with the global batch (measured 1.4e-7 to 2.1e-7 over 30 steps,
# Adam / C-Adam / PARC / PARC with early stops, on this 2-core CPU: each test prints its figure with -s)
DDP_BOUND = 1e-6


def test_two_processes_match_one_process_with_the_doubled_batch(tmp_path):
    assert ddp_vs_single(tmp_path, ["trainer.log_every=7"]) < DDP_BOUND     # flushes off the eval grid too


@pytest.mark.slow
def test_cadam_two_processes_match_one_process(tmp_path):
    """C-Adam's λ-updates read the gradient-norm window: DDP-averaged gradients give every rank the same Δλ."""
    assert ddp_vs_single(tmp_path, ["task=digits_ae", "optimizer=cadam", "model.width=16"], batch=64) < DDP_BOUND


@pytest.mark.slow
def test_parc_two_processes_match_one_process(tmp_path):
    """PARC's λ is a buffer, which DDP broadcasts from rank 0 at every forward (its default), so the ranks share
    one λ; measured against one process with the global batch: max relative loss difference 1.4e-7 over 30 steps."""
    assert ddp_vs_single(tmp_path, ["task=digits_ae", "optimizer=parc", "model.width=16"], batch=64) < DDP_BOUND


@pytest.mark.slow
def test_parc_early_stops_and_lambda_steps_are_those_of_the_global_batch(tmp_path):
    """C2's early stop ends correctors on a loss test and λ steps on ∂L/∂λ: per rank (λ is a buffer, so DDP
    averages neither) the ranks would end correctors at different steps and project θ with different λ.
    PARC averages both over the ranks in one all_reduce per step; with a test that fires often
    (corrector_min_steps=2, ma_window=2, loss_tol=0.2) two processes still match one with the global batch."""
    arm = ["task=digits_ae", "optimizer=parc", "model.width=16", "optimizer.corrector_min_steps=2",
           "optimizer.ma_window=2", "optimizer.loss_tol=0.2", "optimizer.lambda_lr=0.05"]
    assert ddp_vs_single(tmp_path, arm, batch=64) < DDP_BOUND


def test_explicit_gpu_index_under_data_parallel_is_one_clear_error():
    """trainer.device=cuda:N under torchrun would put every rank on GPU N; auto/cuda take cuda:LOCAL_RANK."""
    from contnet.engine.distributed import device_for
    from contnet.parallel import Context
    from contnet.registry import ConfigError
    with pytest.raises(ConfigError, match="trainer.device=cuda:1 under torchrun with 2 processes"):
        device_for("cuda:1", Context(rank=1, world_size=2, local_rank=1))
    assert device_for("cuda:1", Context()) == "cuda:1"              # a single process keeps its choice
    assert device_for("cpu", Context(rank=1, world_size=2, local_rank=1)) == "cpu"


def torchrun(cwd, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CONTNET_DIST_BACKEND": "gloo"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "contnet.cli.main", "train", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=400, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.mark.slow
def test_checkpoint_keeps_every_ranks_rng_and_resumes_with_two_or_one_process(tmp_path, caplog):
    """A 2-rank checkpoint holds both ranks' RNG states; resuming it with 2 ranks, and with 1 process (a warning,
    no IndexError), both end where an uninterrupted single process with the global batch ends."""
    import shutil

    import torch
    cut = tmp_path / "cut"
    base = ["trainer.batch_size=32", *COMMON[1:], "trainer.eval_every=0", "trainer.eval_train=false"]
    torchrun(tmp_path, [f"hydra.run.dir={cut}", "trainer.max_steps=15", *base])
    ckpt = torch.load(cut / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["progress"]["step"] == 15 and len(ckpt["rng_ranks"]) == 2
    assert all(set(r) >= {"torch", "python", "numpy"} for r in ckpt["rng_ranks"])
    one = tmp_path / "one"
    shutil.copytree(cut, one)

    torchrun(tmp_path, [f"hydra.run.dir={cut}", "trainer.max_steps=30", f"trainer.resume={cut}", *base])
    single = [f"trainer.max_steps={STEPS}", "trainer.batch_size=64", *base[1:]]
    with caplog.at_level("WARNING", logger="contnet"):
        run_inprocess([*single, f"trainer.resume={one}"], one)
    assert "written by 2 process(es), this run has 1" in caplog.text
    run_inprocess(single, tmp_path / "ref")
    ref = [r["train/loss"] for r in read_metrics(tmp_path / "ref") if "train/loss" in r]
    for run_dir in (cut, one):
        got = [r for r in read_metrics(run_dir) if "train/loss" in r]
        assert [r["step"] for r in got] == list(range(1, STEPS + 1))
        assert [r["train/loss"] for r in got] == pytest.approx(ref, rel=1e-5)


DEAD_CELL = ["model=seq2d", "model.pattern=grid", "model.grid.sizes=[in,16,16,out]",   # slot 2 never reaches the output
             "model.grid.layout=[[I,null,null,null],[W,null,null,null],[W,null,null,null],[null,W,null,null]]"]


@pytest.mark.slow
def test_seq2d_grid_with_a_dead_cell_trains_under_two_processes(tmp_path):
    """A grid cell whose slot never reaches the output gets no gradient; DistributedDataParallel then raises
    (find_unused_parameters off) unless trainer.find_unused_parameters=auto turns it on from a probe step.
    The probe leaves no trace: the run still matches one process with the global batch."""
    assert ddp_vs_single(tmp_path, DEAD_CELL) < 1e-5


def test_find_unused_probe_names_the_dead_cell_and_leaves_no_trace():
    import torch

    from contnet.engine.distributed import find_unused, unused_parameters
    from contnet.parallel import Context
    from contnet.engine.config import trainer_config
    from contnet.engine.run import build, resolve_auto, validate
    from contnet.engine.setup import Precision, Setup
    from tests.helpers.config import compose
    cfg = compose([*DEAD_CELL, "trainer.device=cpu", "trainer.max_steps=2"])
    validate(cfg)
    resolve_auto(cfg)
    task, model, *_ = build(cfg, trainer_config(cfg.trainer), 0, None, Setup(torch.device("cpu"), Precision()))
    batch = next(iter(task.train_batches(8, torch.Generator().manual_seed(0), torch.device("cpu"))))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    assert unused_parameters(model, lambda: task.loss(model, batch)) == ["map.blocks.2,0.weight", "map.biases.2"]
    assert all(p.grad is None for p in model.parameters()) and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert find_unused("auto", model, lambda: task.loss(model, batch), Context()) is True
    assert find_unused(False, model, lambda: task.loss(model, batch), Context()) is False


@pytest.mark.slow
def test_text_task_loss_is_the_global_token_mean_under_two_processes(tmp_path):
    """tiny-gpt2 + LoRA (adapter dropout off: its draws depend on the shard shape) on E2E: completions differ in length, so the ranks' shards hold different token counts;
    the loss is weighted by each rank's share of the global token count, and 2 processes × 4 sequences step
    like 1 process × 8 (a mean of the ranks' per-token means would not)."""
    pytest.importorskip("peft")
    from tests.helpers.data import e2e_dir
    args = ["task=e2e", "model=tiny-gpt2", "peft=lora", "peft.dropout=0.0", f"task.data_dir={e2e_dir(tmp_path)}", "task.train_size=32",
            "task.meteor=false", "task.download=false", "trainer.max_steps=6", "trainer.eval_every=0",
            "trainer.eval_train=false", "task.generation.max_new_tokens=4", "trainer.device=cpu", "seed=3",
            "trainer.log_every=1"]
    torchrun(tmp_path, [f"hydra.run.dir={tmp_path / 'two'}", "trainer.batch_size=4", *args])
    run_inprocess(["trainer.batch_size=8", *args], tmp_path / "one")
    two, one = ([r["train/loss"] for r in read_metrics(tmp_path / d) if "train/loss" in r] for d in ("two", "one"))
    assert len(two) == len(one) == 6
    assert two == pytest.approx(one, rel=1e-5)


def test_sync_bn_converts_batchnorm_in_place_for_data_parallel_cuda_runs_only():
    """trainer.sync_bn=auto: BatchNorm → SyncBatchNorm (global-batch statistics) for a data-parallel CUDA run; the
    same parameter tensors (the optimizer keeps them) and state_dict keys (checkpoints keep loading).  torch's
    SyncBatchNorm has no CPU kernel, so CPU runs keep BatchNorm and sync_bn=true there is one clear error.  (The
    conversion needs no GPU; a CUDA run of it is not measured here.)"""
    import torch
    from torch import nn

    from contnet.engine.distributed import sync_batchnorm
    from contnet.parallel import Context
    from contnet.registry import ConfigError

    def net():
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    two, cuda, cpu = Context(rank=0, world_size=2), torch.device("cuda", 0), torch.device("cpu")
    model = net()
    params, keys = list(model.parameters()), list(model.state_dict())
    assert sync_batchnorm("auto", model, two, cuda) is True
    assert isinstance(model[1], nn.SyncBatchNorm) and not any(type(m) is nn.BatchNorm2d for m in model.modules())
    assert all(a is b for a, b in zip(model.parameters(), params)) and list(model.state_dict()) == keys
    for setting, ctx, device in (("auto", two, cpu), (False, two, cuda), ("auto", Context(), cuda), (True, Context(), cpu)):
        untouched = net()
        assert sync_batchnorm(setting, untouched, ctx, device) is False and type(untouched[1]) is nn.BatchNorm2d
    with pytest.raises(ConfigError, match="trainer.sync_bn=true needs CUDA"):
        sync_batchnorm(True, net(), two, cpu)


@pytest.mark.slow
def test_batchnorm_model_recalibrates_on_every_rank_and_completes(tmp_path):
    """ResNet-8 (BatchNorm) under 2 gloo processes: the pre-evaluation BatchNorm recalibration runs on every rank
    (with SyncBatchNorm on CUDA it is a collective; rank 0 alone would hang) and the run completes."""
    import json
    torchrun(tmp_path, [f"hydra.run.dir={tmp_path / 'bn'}", "trainer.batch_size=16", "trainer.max_steps=6",
                        "trainer.eval_every=3", "trainer.eval_train=false", "trainer.device=cpu", "model=resnet",
                        "model.depth=8", "trainer.progress=false"])
    assert json.loads((tmp_path / "bn" / "summary.json").read_text())["status"] == "completed"
    assert len([r for r in read_metrics(tmp_path / "bn") if "val/acc" in r]) == 3        # steps 0, 3 and the end


@pytest.mark.slow
def test_timed_checkpoints_are_taken_at_the_same_step_on_every_rank(tmp_path):
    """Checkpoints gather every rank's RNG state (a collective), so the wall-clock checkpoint decision is or-ed
    over ranks at the flush (a rank deciding alone would hang the run).  Here a save is due at every flush on
    both ranks: the timed path runs under DDP; a disagreement between the ranks' clocks is not forced."""
    import torch
    torchrun(tmp_path, [f"hydra.run.dir={tmp_path / 'timed'}", "trainer.batch_size=16", "trainer.max_steps=20",
                        "trainer.log_every=4", "trainer.checkpoint_every_s=1e-9", "trainer.eval_every=0",
                        "trainer.device=cpu", "model.width=16", "trainer.progress=false"])
    ckpt = torch.load(tmp_path / "timed" / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["progress"]["step"] == 20 and len(ckpt["rng_ranks"]) == 2
