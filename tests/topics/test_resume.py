"""Kill-and-resume: a run killed (SIGKILL) or stopped (SIGTERM) mid-training and resumed with
trainer.resume ends with metrics bitwise-equal to an uninterrupted run (everything but time_s)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers.runs import SignalAtStep as _SignalAtStep
from tests.helpers.runs import comparable, curves, read_metrics, run_inprocess


STEPS = 150
COMMON = [f"trainer.max_steps={STEPS}", "trainer.eval_every=40", "trainer.checkpoint_every=10", "model.width=32",
          "trainer.eval_train=false", "seed=5", "trainer.progress=false"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference")
    summary = run_inprocess(COMMON, run_dir)
    return run_dir, summary


def start_cli(run_dir: Path, cwd: Path, extra: list[str] = ()) -> subprocess.Popen:
    log = open(cwd / "cli.log", "w")
    return subprocess.Popen([sys.executable, "-m", "contnet.cli.main", "train", f"hydra.run.dir={run_dir}",
                             *COMMON, *extra], cwd=cwd, stdout=log, stderr=subprocess.STDOUT)


def wait_for_checkpoint(proc: subprocess.Popen, run_dir: Path, timeout: float = 120) -> None:
    ckpt = run_dir / "checkpoints" / "last.pt"
    deadline = time.monotonic() + timeout
    while not ckpt.exists():
        assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.01)


def checkpoint_step(run_dir: Path) -> int:
    return int(torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["progress"]["step"])


def test_sigkill_then_resume_is_bitwise_equal_to_an_uninterrupted_run(tmp_path, reference):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text(json.dumps({"status": "completed"}))   # stale, from an older run
    proc = start_cli(run_dir, tmp_path, ["trainer.overwrite=true"])       # which overwrite clears first
    wait_for_checkpoint(proc, run_dir)
    proc.kill()                                             # SIGKILL: no handler runs
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "summary.json").exists()          # never a "completed" summary from a killed run
    step = checkpoint_step(run_dir)
    assert 0 < step < STEPS
    logged = max(r["step"] for r in read_metrics(run_dir))
    print(f"SIGKILL: last checkpoint at step {step}, metrics on disk up to step {logged} of {STEPS}")
    summary = run_inprocess([*COMMON, f"trainer.resume={run_dir}"], tmp_path / "unused")
    ref_dir, ref_summary = reference
    assert comparable(summary) == comparable(ref_summary)
    assert curves(run_dir) == curves(ref_dir)
    assert [r["step"] for r in read_metrics(run_dir) if "train/loss" in r] == list(range(1, STEPS + 1))


@pytest.mark.slow     # fast: a real process's SIGTERM in test_run_phases, SIGTERM mid-loop in this process below
def test_sigterm_saves_a_checkpoint_and_says_interrupted_then_resume_auto(tmp_path, reference):
    run_dir = tmp_path / "run"
    proc = start_cli(run_dir, tmp_path)
    wait_for_checkpoint(proc, run_dir)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == signal.SIGTERM
    assert 0 < summary["steps"] < STEPS and checkpoint_step(run_dir) == summary["steps"]
    assert max(r["step"] for r in read_metrics(run_dir)) == summary["steps"]
    resumed = run_inprocess([*COMMON, "trainer.resume=auto"], run_dir)    # auto: this run dir's checkpoint
    ref_dir, ref_summary = reference
    assert comparable(resumed) == comparable(ref_summary)
    assert curves(run_dir) == curves(ref_dir)


def test_resume_auto_of_a_completed_run_does_nothing(tmp_path):
    over = ["trainer.max_steps=12", "model.width=16", "trainer.eval_every=0"]
    first = run_inprocess(over, tmp_path / "r")
    before = (tmp_path / "r" / "metrics.jsonl").read_text()
    again = run_inprocess([*over, "trainer.resume=auto"], tmp_path / "r")
    assert again == json.loads(json.dumps(first)) and again["status"] == "completed"
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize("optimizer", ["cadam"])     # adam: the SIGTERM/SIGKILL tests above
def test_interrupt_and_resume_keep_optimizer_and_continuation_state(tmp_path, monkeypatch, optimizer):
    """C-Adam's λ, Δλ and secant history live in its state_dict; a resumed run must not notice the cut."""
    from contnet.engine import run as run_mod
    task = ["task=digits_ae", f"optimizer={optimizer}", "model.width=32", "trainer.max_steps=50",
            "trainer.eval_every=20", "trainer.batch_size=128", "optimizer.lr=3e-3",
            "trainer.log_every=1"]                      # records reach the loggers at their step (the signal's cue)
    ref = run_inprocess(task, tmp_path / "ref")
    make = run_mod.make_loggers
    monkeypatch.setattr(run_mod, "make_loggers", lambda *a, **k: [*make(*a, **k), _SignalAtStep(33)])
    cut = run_inprocess(task, tmp_path / "cut")
    monkeypatch.setattr(run_mod, "make_loggers", make)
    # the flag set while step 33 is logged is read after the next optimizer step
    assert cut["status"] == "interrupted" and cut["steps"] == 34
    resumed = run_inprocess([*task, "trainer.resume=auto"], tmp_path / "cut")
    assert comparable(resumed) == comparable(ref)
    assert curves(tmp_path / "cut") == curves(tmp_path / "ref")
    if optimizer == "cadam":
        assert any(r.get("lambda", 1.0) < 1.0 for r in read_metrics(tmp_path / "ref"))   # λ really moved


def test_default_settings_checkpoint_on_a_wall_clock_interval():
    from tests.helpers.config import compose
    tcfg = compose([]).trainer
    assert tcfg.checkpoint_every_s > 0 and not tcfg.checkpoint_every     # the default policy is the timed one


def test_with_only_timed_checkpoints_a_flush_saves_one_mid_run(tmp_path, monkeypatch):
    """The default policy's saving in this process (the SIGKILL test below, slow, resumes from such a checkpoint):
    with a wall-clock interval that is always due, the first flush saves a checkpoint long before the end."""
    from contnet.engine import run as run_mod
    run_dir, seen = tmp_path / "run", []

    class Peek:
        def log(self, record):
            if record.get("step") == 12 and "train/loss" in record:
                seen.append(checkpoint_step(run_dir) if (run_dir / "checkpoints" / "last.pt").exists() else None)

        def summary(self, s):
            pass

        def close(self, status):
            pass
    make = run_mod.make_loggers
    monkeypatch.setattr(run_mod, "make_loggers", lambda *a, **k: [*make(*a, **k), Peek()])
    over = ["trainer.max_steps=20", "trainer.eval_every=0", "model.width=16", "trainer.log_every=4",
            "trainer.checkpoint_every=0", "trainer.checkpoint_every_s=1e-9"]
    assert run_inprocess(over, run_dir)["status"] == "completed"
    assert len(seen) == 1 and seen[0] is not None and 0 < seen[0] < 12, seen


@pytest.mark.slow     # fast: SIGKILL and resume with step checkpoints above, timed saving in this process above
def test_sigkill_with_only_the_timed_checkpoints_then_resume_auto_is_bitwise_equal(tmp_path):
    """The default policy (no step interval, a wall-clock one; here 0.2 s instead of 60 s to be quick):
    a SIGKILLed run resumes with trainer.resume=auto to the numbers of an uninterrupted run."""
    steps = 600
    over = [f"trainer.max_steps={steps}", "trainer.eval_every=100", "model.width=32", "trainer.eval_train=false",
            "seed=5", "trainer.progress=false", "trainer.checkpoint_every=0", "trainer.checkpoint_every_s=0.2"]
    run_dir = tmp_path / "run"
    log = open(tmp_path / "cli.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "contnet.cli.main", "train", f"hydra.run.dir={run_dir}", *over],
                            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    wait_for_checkpoint(proc, run_dir)
    proc.kill()
    proc.wait(timeout=30)
    step = checkpoint_step(run_dir)
    assert proc.returncode == -signal.SIGKILL and 0 < step < steps
    resumed = run_inprocess([*over, "trainer.resume=auto"], run_dir)
    ref = run_inprocess(over, tmp_path / "ref")
    assert comparable(resumed) == comparable(ref)
    assert curves(run_dir) == curves(tmp_path / "ref")
    assert [r["step"] for r in read_metrics(run_dir) if "train/loss" in r] == list(range(1, steps + 1))
