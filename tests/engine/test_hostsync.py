"""No host sync in the steady-state step: per-step loss/λ stay on the device and reach the loggers in one
transfer per flush (trainer.log_every); metrics.jsonl keeps one record per step; NaN/Inf and divergence
relative to the first loss are caught at the flush and the run ends at the first bad step.

On CPU a device→host sync cannot be observed, so contnet.engine.hostsync counts the calls that would be
one on CUDA (Tensor.item/float/int/bool/tolist/cpu/numpy) made from contnet code."""
from __future__ import annotations

import json
import math

import pytest

from tests.helpers.cli import BOTH_CLIS
from tests.helpers.data import e2e_dir
from tests.helpers.runs import read_metrics, run_inprocess


FLUSH, STEPS = 10, 40
COMMON = [f"trainer.max_steps={STEPS}", f"trainer.log_every={FLUSH}", "trainer.eval_every=0",
          "trainer.checkpoint_every_s=0", "trainer.progress=false", "trainer.threads=1"]
FLUSH_SITE = "distributed.py"               # the one .tolist() of a flush (reduce_values)


class _Marks:
    """A logger noting how many conversions had been counted when each train record arrived."""

    def __init__(self, counter):
        self.counter, self.at = counter, {}

    def log(self, rec):
        if "train/loss" in rec:
            self.at[rec["step"]] = len(self.counter.events)

    def summary(self, s):
        pass

    def close(self, status):
        pass


def window_events(monkeypatch, overrides, run_dir):
    """Sites of the conversions made between the flush at step FLUSH and the one at STEPS (the steady state)."""
    from contnet.engine import run as run_mod
    from contnet.engine.hostsync import count_host_syncs
    make = run_mod.make_loggers
    with count_host_syncs() as counter:
        marks = _Marks(counter)
        monkeypatch.setattr(run_mod, "make_loggers", lambda *a, **k: [*make(*a, **k), marks])
        summary = run_inprocess([*COMMON, *overrides], run_dir)
    assert summary["status"] == "completed"
    return [site.split(":")[0] + " " + site.split()[-1] for site in counter.events[marks.at[FLUSH]:marks.at[STEPS]]]


FLUSHES_IN_WINDOW = STEPS // FLUSH - 1


def test_adam_step_loop_makes_no_conversion_between_flushes(tmp_path, monkeypatch):
    events = window_events(monkeypatch, ["model.width=32"], tmp_path / "r")
    assert events == [f"{FLUSH_SITE} tolist"] * FLUSHES_IN_WINDOW


@pytest.mark.parametrize("predictor", [[], ["optimizer.secant=true", "optimizer.ratio_mode=frozen"]],
                         ids=["default", "secant-frozen"])
def test_cadam_converts_only_at_flushes(tmp_path, monkeypatch, predictor):
    """C-Adam's Δλ rule runs on the device (contnet/continuation/npacs.py): its λ-updates (every u_freq = 10
    steps, adaptive from the start here) read nothing on the host; the only conversions are the flushes."""
    events = window_events(monkeypatch, ["task=digits_ae", "optimizer=cadam", "model.width=16",
                                         "optimizer.window=5", "optimizer.adaptive_start=0", *predictor],
                           tmp_path / "r")
    assert events == [f"{FLUSH_SITE} tolist"] * FLUSHES_IN_WINDOW


@pytest.mark.parametrize("check", ["loss", "fixed"])
def test_parc_converts_only_at_flushes(tmp_path, monkeypatch, check):
    """PARC (contnet/continuation/parc.py): ∂L/∂λ, the λ step, the projection, the secant, the early-stop test of
    the default corrector_check=loss (C2's running-mean test), the Δs rule and the λ ≥ 1 − tol finish test all
    run on the device; the host learns of corrector ends and of the finish through flags it never waits for.
    In the window several correctors end (the first is the natural one), and the only conversions are the flushes."""
    events = window_events(monkeypatch, ["task=digits_ae", "optimizer=parc", "model.width=16",
                                         f"optimizer.corrector_check={check}"], tmp_path / "r")
    assert events == [f"{FLUSH_SITE} tolist"] * FLUSHES_IN_WINDOW


def test_lm_path_converts_only_at_flushes_and_epoch_starts(tmp_path, monkeypatch):
    """tiny-gpt2 + LoRA on E2E: the token count of the loss stays on the device; the data order is drawn
    on the host once per epoch (a CPU tensor: no device sync on CUDA)."""
    data = e2e_dir(tmp_path)
    events = window_events(monkeypatch, ["task=e2e", "model=tiny-gpt2", "peft=lora", f"task.data_dir={data}",
                                         "trainer.batch_size=8", "task.train_size=16", "task.meteor=false",
                                         "task.generation.max_new_tokens=4"], tmp_path / "r")
    assert events.count(f"{FLUSH_SITE} tolist") == FLUSHES_IN_WINDOW
    epochs = (STEPS - FLUSH) // 2                                    # 16 examples / batch 8 = 2 steps per epoch
    assert events.count("e2e.py tolist") == epochs
    assert len(events) == FLUSHES_IN_WINDOW + epochs


def test_deferred_records_equal_per_step_records(tmp_path):
    """log_every changes when records are written, never what: one record per step, same values."""
    runs = {}
    for every in (1, 7):
        run_inprocess(["optimizer=cadam", "model.width=16", "trainer.max_steps=30", "trainer.eval_every=10",
                       f"trainer.log_every={every}", "trainer.progress=false", "trainer.threads=1"],
                      tmp_path / str(every))
        runs[every] = [{k: v for k, v in r.items() if k != "time_s"} for r in read_metrics(tmp_path / str(every))]
    assert runs[1] == runs[7]
    train = [r for r in runs[7] if "train/loss" in r]
    assert [r["step"] for r in train] == list(range(1, 31)) and all("lambda" in r for r in train)
    evals = [i for i, r in enumerate(runs[7]) if "val/loss" in r]
    assert [runs[7][i - 1]["step"] for i in evals[1:]] == [10, 20, 30]     # eval records follow their step's


def test_nan_found_at_a_later_flush_ends_the_run_at_the_first_bad_step(tmp_path):
    summary = run_inprocess(["optimizer=sgd", "optimizer.lr=1e6", "trainer.max_steps=100", "trainer.eval_every=0",
                             "trainer.log_every=25", "trainer.diverge_factor=null"], tmp_path / "r")
    train = [r for r in read_metrics(tmp_path / "r") if "train/loss" in r]
    assert summary["status"] == "diverged" and summary["diverged_at_step"] == summary["steps"] == train[-1]["step"]
    assert not math.isfinite(train[-1]["train/loss"]) and all(math.isfinite(r["train/loss"]) for r in train[:-1])
    assert summary["steps"] < 25                          # the bad step, not the flush that noticed it


@pytest.mark.parametrize("cli", BOTH_CLIS)      # exit 3 through a real process: test_reliability's diverged sweep
def test_adam_lr_1e6_ends_diverged_not_completed_at_chance(tmp_path, cli):
    """Adam with lr=1e6 never gives NaN on digits (its loss jumps to ~1e22 and falls back to chance):
    the guard relative to the first loss ends it as diverged, exit code 3."""
    res = cli(["train", "optimizer.lr=1e6", "trainer.progress=false", "trainer.device=cpu",
               f"hydra.run.dir={tmp_path / 'r'}"], tmp_path)
    assert res.returncode == 3, res.stderr[-2000:]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_at_step"] <= 50
    assert "exceeds 1000 × the first loss" in res.stdout + res.stderr
    first = read_metrics(tmp_path / "r")[1]["train/loss"]          # record 0 is the step-0 evaluation
    assert read_metrics(tmp_path / "r")[-1]["train/loss"] > 1000 * first
