"""The engine's typed trainer config and its once-per-run setup (device, placement, step budget)."""
from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from omegaconf import OmegaConf

from contnet.engine.config import TrainerConfig, trainer_config
from contnet.registry import TRAINERS, ConfigError
from tests.conftest import compose, run_inprocess

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = ["task=digits", "trainer.device=cpu", "trainer.max_steps=6", "trainer.eval_every=3", "trainer.threads=1"]


def test_library_default_is_the_composed_cli_default_and_the_yaml_holds_no_values():
    composed = OmegaConf.to_container(compose([]).trainer, resolve=True)
    assert dataclasses.asdict(TrainerConfig()) == composed
    assert TRAINERS.config("default") is TrainerConfig and TRAINERS.get("default")(None) == TrainerConfig()
    from importlib import resources
    yaml = OmegaConf.create((resources.files("contnet.conf") / "trainer" / "default.yaml").read_text())
    assert set(yaml) == {"defaults"}


@pytest.mark.parametrize("node, words", [
    ({"batch_size": 0}, "trainer.batch_size=0: must be"),
    ({"log_every": 0}, "trainer.log_every=0"),
    ({"diverge_factor": 1.0}, "trainer.diverge_factor=1"),   # a whole float prints as typed on the command line
    ({"device": "tpu"}, "trainer.device=tpu"),
    ({"threads": -2}, "trainer.threads=-2"),
    ({"precision": "fp8"}, "trainer.precision=fp8"),
    ({"max_steps": None, "max_epochs": None}, "trainer.max_steps=null"),
    ({"resume": "auto", "overwrite": True}, "contradicts trainer.resume=auto"),
    ({"eval_evry": 5}, "trainer.eval_evry=5: unknown key for trainer=default; its keys are: name, max_epochs"),
])
def test_trainer_rules_live_on_the_typed_config(node, words):
    with pytest.raises(ConfigError) as e:
        trainer_config(node)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_fit_reads_a_partial_trainer_node_with_the_class_defaults():
    cfg = trainer_config(OmegaConf.create({"max_steps": 7, "threads": None, "channels_last": True}))
    assert isinstance(cfg, TrainerConfig) and cfg.max_steps == 7 and cfg.threads is None and cfg.batch_size == 64


def test_a_run_picks_its_device_places_its_model_and_counts_its_steps_once(tmp_path, monkeypatch):
    from contnet.engine import setup
    calls = {"pick_device": 0, "total_steps": 0, "to": 0}

    def counted(name, fn):
        def wrapper(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapper
    monkeypatch.setattr(setup, "pick_device", counted("pick_device", setup.pick_device))
    monkeypatch.setattr(setup, "total_steps", counted("total_steps", setup.total_steps))
    to = torch.nn.Module.to

    def module_to(self, *a, **k):
        if a and isinstance(a[0], (str, torch.device)):        # a placement, not a dtype/layout change
            calls["to"] += 1
        return to(self, *a, **k)
    monkeypatch.setattr(torch.nn.Module, "to", module_to)
    summary = run_inprocess(FAST, tmp_path / "r")
    assert summary["status"] == "completed" and summary["steps"] == 6
    assert calls == {"pick_device": 1, "total_steps": 1, "to": 1}


def test_a_failing_plot_is_logged_and_the_run_completes(tmp_path, monkeypatch, caplog):
    from contnet.engine import loop

    def broken(*a, **k):
        raise RuntimeError("no display backend")
    monkeypatch.setattr(loop, "plot_curves", broken)
    with caplog.at_level(logging.WARNING, logger="contnet"):
        summary = run_inprocess(FAST, tmp_path / "r")
    assert summary["status"] == "completed" and not (tmp_path / "r" / "curves.png").exists()
    assert any("curves.png not written (RuntimeError: no display backend)" in r.getMessage() for r in caplog.records)
