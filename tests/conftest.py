"""Shared fixtures: compose configs in-process and run the CLI as a subprocess, never touching the network."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch, tmp_path):
    """No network, no stray files: W&B offline into tmp, HF hub offline, no user API key."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CONTNET_DATA", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one intra-op thread is several times faster on a loaded 2-core runner."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train_mse(model, opt, data) -> list[float]:
    """One optimizer step per (x, y) batch through the closure contract; the losses it returned."""
    import torch.nn.functional as F
    losses = []
    for x, y in data:
        def closure():
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(x), y)
            loss.backward()
            return loss
        losses.append(float(opt.step(closure).detach()))
    return losses


def compose(overrides: list[str] | None = None):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="contnet.conf", version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides or []))


@functools.lru_cache(maxsize=None)
def compose_option(group: str, option: str):
    """The default config with `group=option`, composed once per session for the tests that compose every option
    (test_schema, test_validation) and only read it: do not modify the returned config."""
    return compose([f"{group}={option}"])


def run_inprocess(overrides: list[str], run_dir: Path) -> dict:
    from contnet.engine.run import run
    cfg = compose(["trainer.progress=false", *overrides])
    return run(cfg, run_dir)


def run_cli(args: list[str], cwd: Path, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "contnet.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def cli_inprocess(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`contnet <args>` through the same entry point as run_cli (contnet.cli.main.main), in this process: no
    interpreter start and no torch/Hydra import per call.  For tests that are not about the process itself; each
    failure path keeps at least one real run_cli test.  Exit code, stdout and stderr come back as run_cli's do
    (a sys.exit becomes the return code); cwd, env, sys.argv, the root logger's handlers (Hydra's job logging)
    and torch's thread count are restored afterwards."""
    import contextlib
    import io
    import logging

    import torch
    from hydra.core.global_hydra import GlobalHydra

    from contnet.cli.main import main
    out, err = io.StringIO(), io.StringIO()
    env = {"COLUMNS": "80", **(env or {})}        # rich's width in a process whose output is a pipe
    saved_env = {k: os.environ.get(k) for k in env}
    root = logging.getLogger()
    saved_log = (list(root.handlers), root.level, torch.get_num_threads(), list(sys.argv), os.getcwd())
    os.environ.update(env)
    os.chdir(cwd)
    GlobalHydra.instance().clear()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in args])
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        GlobalHydra.instance().clear()
        handlers, level, threads, argv, where = saved_log
        for h in root.handlers:
            if h not in handlers:
                h.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        torch.set_num_threads(threads)
        sys.argv[:] = argv
        os.chdir(where)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return subprocess.CompletedProcess(["contnet", *args], rc, out.getvalue(), err.getvalue())


class InProcessCommands:
    """A stand-in for the `subprocess` module of the reproduce and tune drivers (monkeypatch it onto
    contnet.reproduce.driver / contnet.tune): their `python -m contnet.tune …` and `python -m contnet.cli.main …`
    commands run through those modules' mains in this process, the output going to the log file the driver
    opened.  The commands are the drivers' own; only the interpreter start is saved."""
    STDOUT, TimeoutExpired, SubprocessError = subprocess.STDOUT, subprocess.TimeoutExpired, subprocess.SubprocessError

    @staticmethod
    def run(cmd, cwd=None, stdout=None, **kw) -> subprocess.CompletedProcess:
        import contextlib
        import io

        from contnet.tune import main as tune_main
        assert cmd[:2] == [sys.executable, "-m"] and cmd[2] in ("contnet.tune", "contnet.cli.main"), cmd
        if cmd[2] == "contnet.cli.main":
            res = cli_inprocess(cmd[3:], cwd)
            rc, text = res.returncode, res.stdout + res.stderr
        else:
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                rc = tune_main(cmd[3:])
            text = buf.getvalue()
        stdout.write(text)
        return subprocess.CompletedProcess(cmd, rc)


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
