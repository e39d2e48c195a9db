"""Shared fixtures: compose configs in-process and run the CLI as a subprocess, never touching the network."""
from __future__ import annotations

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


def run_inprocess(overrides: list[str], run_dir: Path) -> dict:
    from contnet.engine.run import run
    cfg = compose(["trainer.progress=false", *overrides])
    return run(cfg, run_dir)


def run_cli(args: list[str], cwd: Path, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "contnet.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
