"""Divergence, offline W&B and missing datasets: a run either completes or fails fast with one line."""
from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time

import pytest

from tests.helpers.cli import BOTH_CLIS, cli_inprocess, run_cli
from tests.helpers.runs import read_metrics, run_inprocess


def test_nan_loss_stops_at_once_with_status_diverged_and_the_step(tmp_path):
    summary = run_inprocess(["optimizer=sgd", "optimizer.lr=1e6", "trainer.max_steps=100", "trainer.eval_every=0",
                             "trainer.diverge_factor=null"], tmp_path / "r")     # the NaN path, not the relative guard
    assert summary["status"] == "diverged"
    assert 0 < summary["steps"] < 100 and summary["diverged_at_step"] == summary["steps"]
    on_disk = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert on_disk["status"] == "diverged" and on_disk["diverged_at_step"] == summary["steps"]
    train = [r for r in read_metrics(tmp_path / "r") if "train/loss" in r]
    assert train[-1]["step"] == summary["steps"] and not math.isfinite(train[-1]["train/loss"])
    assert all(math.isfinite(r["train/loss"]) for r in train[:-1])     # it stopped at the first one
    assert not (tmp_path / "r" / "checkpoints" / "last.pt").exists()   # nothing to resume from


def test_multirun_goes_on_after_a_diverged_job_exits_non_zero_and_the_report_counts_it(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_cli(["train", "-m", "optimizer=sgd", "optimizer.lr=1e6,0.05", f"hydra.sweep.dir={sweep}",
                   "trainer.max_steps=30", "trainer.eval_every=0"], tmp_path)
    assert res.returncode == 3, res.stderr[-2000:]                 # every job ran, then: not a success
    status = [json.loads((sweep / str(i) / "summary.json").read_text())["status"] for i in range(2)]
    assert status == ["diverged", "completed"]
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: 1 of 2 jobs did not complete (1 diverged); see {sweep}"]
    report = (sweep / "report.md").read_text()                     # written by the sweep's report callback
    assert "1 diverged" in report and "| diverged |" in report


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_multirun_with_a_failed_job_runs_the_rest_exits_1_and_the_report_says_failed(tmp_path, cli):
    """Job 0's data are missing (found only when the job downloads them); job 1 must still run.  (A sweep's exit
    code through a real process: the diverged job's test above.)"""
    sweep = tmp_path / "sweep"
    no_net = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
              "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    res = cli(["train", "-m", "task=mnist,digits", f"hydra.sweep.dir={sweep}",     # CONTNET_DATA: empty
               "trainer.max_steps=3", "trainer.eval_every=0", "model.depth=1"], tmp_path, env=no_net)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    status = [json.loads((sweep / str(i) / "summary.json").read_text())["status"] for i in range(2)]
    assert status == ["failed", "completed"]
    assert "mnist" in json.loads((sweep / "0" / "summary.json").read_text())["error"]
    assert res.stderr.strip().splitlines()[-1] == f"error: 1 of 2 jobs did not complete (1 failed); see {sweep}"
    report = (sweep / "report.md").read_text()
    assert "(1 failed)" in report and "incomplete" not in report


# --- W&B without key or network --------------------------------------------------------------------

def _offline_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "contnet" and "offline" in r.getMessage()]


def _timed(overrides, run_dir):
    t = time.perf_counter()
    summary = run_inprocess(["logger=wandb", "trainer.max_steps=5", "trainer.eval_every=0", *overrides], run_dir)
    return time.perf_counter() - t, summary


def test_wandb_online_without_key_runs_offline_and_says_so_once(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))                      # no ~/.netrc key
    caplog.set_level(logging.WARNING, logger="contnet")
    _, summary = _timed(["logger.mode=online"], tmp_path / "r")
    assert summary["status"] == "completed"
    assert len(_offline_warnings(caplog)) == 1 and "no API key" in _offline_warnings(caplog)[0]
    assert list((tmp_path / "r" / "wandb").glob("offline-run-*/run-*.wandb"))


def test_wandb_with_key_but_no_server_runs_offline_within_20s_extra(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    baseline, _ = _timed(["logger.mode=offline"], tmp_path / "offline")
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")     # discard port: connection refused
    caplog.set_level(logging.WARNING, logger="contnet")
    took, summary = _timed(["logger.mode=online"], tmp_path / "r")
    assert summary["status"] == "completed"
    assert len(_offline_warnings(caplog)) == 1 and "unreachable" in _offline_warnings(caplog)[0]
    assert list((tmp_path / "r" / "wandb").glob("offline-run-*/run-*.wandb"))
    print(f"wandb key + refused server: {took:.1f} s vs offline {baseline:.1f} s (extra {took - baseline:+.1f} s)")
    assert took - baseline < 20


@pytest.mark.slow
def test_wandb_server_that_never_answers_falls_back_within_20s_extra(tmp_path, monkeypatch, caplog):
    """A listener that accepts connections and never replies: only init_timeout can end the wait (slow: it waits
    for it; the fallback itself is the refused server's test above)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass
    threading.Thread(target=accept, daemon=True).start()
    try:
        monkeypatch.delenv("WANDB_MODE", raising=False)
        monkeypatch.setenv("HOME", str(tmp_path))
        baseline, _ = _timed(["logger.mode=offline"], tmp_path / "offline")
        monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{srv.getsockname()[1]}")
        caplog.set_level(logging.WARNING, logger="contnet")
        took, summary = _timed(["logger.mode=online"], tmp_path / "r")
    finally:
        stop.set()
        for c in held:
            c.close()
        srv.close()
    assert summary["status"] == "completed" and len(_offline_warnings(caplog)) == 1
    print(f"wandb key + silent server: {took:.1f} s vs offline {baseline:.1f} s (extra {took - baseline:+.1f} s)")
    assert took - baseline < 20


# --- datasets missing offline ----------------------------------------------------------------------

@pytest.mark.parametrize("download, cli", [("false", cli_inprocess), ("true", cli_inprocess),
                                           pytest.param("true", run_cli, marks=pytest.mark.slow)])
def test_missing_dataset_offline_fails_in_one_line_naming_the_path(tmp_path, download, cli):
    """The download attempt through a real process in the slow suite; a data file's process in the fast suite:
    test_bad_inputs (a truncated MNIST file)."""
    empty = tmp_path / "nodata"
    empty.mkdir()
    no_net = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
              "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    t = time.perf_counter()
    args = ["train", f"hydra.run.dir={tmp_path / 'r'}", "task=mnist", f"task.download={download}", f"task.data_dir={empty}"]
    res = cli(args, tmp_path, env=no_net)
    took = time.perf_counter() - t
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and str(empty) in errors[0] and "task.download" in errors[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "r").exists()                   # nothing half-written, not even Hydra's .hydra/
    assert took < 120
