"""Tuned comparisons (python -m contnet.tune, Hydra's Optuna sweeper): the preset composes, tuning is
deterministic for a fixed sampler seed, minimises the validation loss, resumes, and reports on test."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contnet.tune import completed_seeds, plan_from, study_trials
from contnet.validation import validate
from tests.helpers import REPO
from tests.helpers.cli import InProcessCommands, cli_inprocess
from tests.helpers.config import compose

TINY = ["trainer.max_steps=6", "trainer.eval_every=3"]


def tune(out: Path, *args: str) -> None:
    """The driver's main in this process (its training sweeps are `contnet train -m` processes unless its
    `subprocess` is InProcessCommands); the driver as a process is tried by test_unknown_arm_is_one_line_and_exit_2."""
    from contnet.tune import main
    assert main(["experiment=tune_digits_ae", "--out", str(out), "--arms", "cadam", *args, *TINY]) == 0


def trial_values(out: Path) -> list[tuple[dict, float]]:
    return [(t.params, t.value) for t in study_trials(out / "tune" / "cadam" / "optuna.db", "cadam")]


def test_preset_composes_with_a_seeded_optuna_sweeper_and_arms():
    cfg = compose(["experiment=tune_digits_ae"])
    validate(cfg)
    plan = plan_from(compose(["experiment=tune_digits_ae"]))
    assert set(plan["arms"]) == {"adam", "cadam"} and plan["trials"] >= 8 and len(plan["seeds"]) >= 3
    assert all("optimizer.lr" in arm["space"] for arm in plan["arms"].values())
    assert cfg.model.init == "pca"               # every arm starts from the same (closed-form) weights
    full = compose(["experiment=tune_digits_ae"], hydra_config=True)
    assert full.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert full.hydra.sweeper.sampler.seed == 0 and full.hydra.sweeper.direction == "minimize"


@pytest.mark.parametrize("sweeps", [pytest.param("in-process"), pytest.param("process", marks=pytest.mark.slow)])
def test_tuning_is_deterministic_resumable_and_reports_on_test(tmp_path, monkeypatch, sweeps):
    """a's training sweeps: `contnet train -m` processes (slow suite) or this process; b's: this process (the
    same trials either way)."""
    import contnet.tune
    a, b = tmp_path / "a", tmp_path / "b"
    with monkeypatch.context() as m:
        if sweeps == "in-process":
            m.setattr(contnet.tune, "subprocess", InProcessCommands)
        tune(a, "--trials", "3", "--seeds", "0")
    with monkeypatch.context() as m:
        m.setattr(contnet.tune, "subprocess", InProcessCommands)
        tune(b, "--trials", "2", "--tune-only")
        tune(b, "--trials", "3", "--tune-only")   # resumes: asks for the one missing trial only
    ta, tb = trial_values(a), trial_values(b)
    assert len(ta) == 3 and len(tb) == 3
    assert ta[:2] == tb[:2]                       # same sampler seed, same trial values and results
    assert len({json.dumps(p, sort_keys=True) for p, _ in ta}) == 3
    assert sorted(p.name for p in (b / "tune" / "cadam").glob("launch*")) == ["launch0", "launch2"]
    for i, (params, value) in enumerate(ta):      # the objective is each trial run's final validation loss
        summary = json.loads((a / "tune" / "cadam" / "launch0" / str(i) / "summary.json").read_text())
        assert summary["final"]["val/loss"] == pytest.approx(value)
        assert summary["seed"] == 100
    best = min(ta, key=lambda pv: pv[1])[0]
    cfg = json.loads(json.dumps(__import__("yaml").safe_load(
        (a / "final" / "cadam" / "seed0" / ".hydra" / "config.yaml").read_text())))
    assert cfg["optimizer"]["lr"] == pytest.approx(best["optimizer.lr"])
    assert completed_seeds(a / "final" / "cadam") == {0}
    report = (a / "report.md").read_text()
    assert "| cadam |" in report and "3 / 0 / 3" in report and "test/loss" in report
    assert (a / "loss_vs_step.png").is_file()
    first = json.loads((a / "timing.json").read_text())
    tune(a, "--trials", "3", "--seeds", "0")     # nothing left to do: no new trial, no new seed (no sweep runs)
    assert len(trial_values(a)) == 3 and completed_seeds(a / "final" / "cadam") == {0}
    again = json.loads((a / "timing.json").read_text())
    assert again["invocations"] == 2 and again["total_s"] >= first["total_s"]
    assert "over 2 invocation(s)" in (a / "report.md").read_text()


def test_unknown_arm_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "contnet.tune", "experiment=tune_digits_ae", "--out",
                           str(tmp_path / "x"), "--arms", "sgd"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "sgd" in proc.stderr and "adam, cadam" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_a_diverged_trial_scores_inf_not_its_last_val_loss(tmp_path):
    """A minimising sweeper must never pick a diverged run for the last finite val/loss it logged."""
    db = tmp_path / "s.db"
    args = ["train", "-m", "task=digits_ae", "hydra/sweeper=tuned",
            "optimizer.lr=choice(50.0)", "hydra.sweeper.n_trials=1", "hydra.sweeper.study_name=s",
            f"hydra.sweeper.storage=sqlite:///{db}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
            "hydra.callbacks.report.enabled=false", "trainer.max_steps=30", "trainer.eval_every=1", "trainer.progress=false"]
    proc = cli_inprocess(args, REPO)              # the sweeper's objective, not the process, is under test
    summary = json.loads((tmp_path / "sweep" / "0" / "summary.json").read_text())
    assert summary["status"] == "diverged", proc.stderr[-1500:]
    [trial] = study_trials(db, "s")
    assert trial.value == float("inf")
