"""pytest fixtures and hooks only; what tests share otherwise (builders, runners, assertions) is in tests/helpers/."""
from __future__ import annotations

import pytest


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
