"""End-to-end behaviour of `contnet train`: run-directory contract, multirun, errors, determinism, W&B."""
from __future__ import annotations

import json

import pytest
import torch

from tests.helpers.cli import cli_inprocess, run_cli
from tests.helpers.runs import curves as _curves
from tests.helpers.runs import read_metrics, run_inprocess


SUMMARY_KEYS = {"status", "steps", "wall_time_s", "trainable_params", "total_params", "seed", "final", "best",
                "task", "model", "optimizer", "peft", "versions"}


def test_cli_run_on_digits_writes_the_run_directory_contract(tmp_path):
    run_dir = tmp_path / "run"
    res = run_cli(["train", f"hydra.run.dir={run_dir}", "trainer.max_epochs=8", "seed=1"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["status"] == "completed" and summary["steps"] == 8 * (1257 // 64)
    assert summary["seed"] == 1 and summary["versions"]["torch"] == torch.__version__
    assert summary["final"]["val/acc"] > 0.85          # chance is 0.1
    assert summary["trainable_params"] == summary["total_params"] > 0
    records = read_metrics(run_dir)
    assert all("step" in r and "time_s" in r for r in records)
    train = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in train] == list(range(1, summary["steps"] + 1))
    assert all("lr" in r for r in train) and not any("lambda" in r for r in train)  # plain Adam: no λ
    assert any("val/acc" in r for r in records) and records[-1].get("test/acc") is not None
    assert (run_dir / "checkpoints" / "last.pt").stat().st_size > 0
    assert not (run_dir / "curves.png").exists()      # trainer.plot=auto: `contnet report <run>` draws it
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert "val/acc" in res.stdout                      # the final table


def test_multirun_two_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    res = cli_inprocess(["train", "-m", "optimizer=adam,rmsprop", f"hydra.sweep.dir={sweep}", "trainer.max_steps=15"],
                        tmp_path)                 # a sweep through a real process: test_reliability (a diverged job)
    assert res.returncode == 0, res.stderr[-2000:]
    summaries = [json.loads((sweep / str(i) / "summary.json").read_text()) for i in range(2)]
    assert [s["optimizer"] for s in summaries] == ["adam", "rmsprop"]
    assert all(s["status"] == "completed" and s["steps"] == 15 for s in summaries)


@pytest.mark.parametrize("args,needle,cli", [
    (["optimizer=adamm"], "unknown optimizer 'adamm'", run_cli),        # a real process for an unknown option
    (["task=nope"], "unknown task 'nope'", cli_inprocess),
    (["optimizer.lr=-1"], "optimizer.lr=-1", cli_inprocess),
    (["trainer.device=tpu"], "trainer.device", cli_inprocess),          # its process: slow (below)
    pytest.param(["trainer.device=tpu"], "trainer.device", run_cli, marks=pytest.mark.slow),
])
def test_bad_input_fails_with_one_clear_line(tmp_path, args, needle, cli):
    res = cli(["train", f"hydra.run.dir={tmp_path / 'r'}", *args], tmp_path)
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "r" / "summary.json").exists()


def test_unknown_command_and_help(tmp_path):
    res = run_cli(["trian"], tmp_path)
    assert res.returncode == 2 and "unknown command 'trian'" in res.stderr
    res = cli_inprocess(["--help"], tmp_path)
    assert res.returncode == 0 and "optimizer" in res.stdout and "digits" in res.stdout
    res = cli_inprocess(["train", "--cfg", "job", "optimizer=rmsprop"], tmp_path)
    assert res.returncode == 0 and "name: rmsprop" in res.stdout


def test_same_seed_gives_identical_metrics_and_other_seed_differs(tmp_path):
    over = ["trainer.max_steps=40", "trainer.eval_every=10"]
    run_inprocess([*over, "seed=3"], tmp_path / "a")
    run_inprocess([*over, "seed=3"], tmp_path / "b")
    run_inprocess([*over, "seed=4"], tmp_path / "c")
    assert _curves(tmp_path / "a") == _curves(tmp_path / "b")
    assert _curves(tmp_path / "a") != _curves(tmp_path / "c")


def test_wandb_without_key_logs_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)          # no mode, no key -> offline, said once
    monkeypatch.setenv("HOME", str(tmp_path))
    summary = run_inprocess(["logger=wandb", "trainer.max_steps=10"], tmp_path / "r")
    assert summary["status"] == "completed"
    runs = list((tmp_path / "r" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))


def test_tensorboard_logger_writes_events(tmp_path):
    run_inprocess(["logger=tensorboard", "trainer.max_steps=5"], tmp_path / "r")
    assert list((tmp_path / "r" / "tensorboard").glob("events.out.tfevents.*"))
