"""The engine's typed trainer config and its once-per-run setup (device, placement, step budget).

trainer.tf32 / trainer.flush_denormal change process-wide torch switches: each run must set them both
ways, so a job of an in-process sweep gives the numbers it gives alone (no setting leaks from job k-1)."""
from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from omegaconf import OmegaConf

from contnet.engine.config import TrainerConfig, trainer_config
from contnet.engine.setup import CUDNN_TF32_DEFAULT, device_settings
from contnet.registry import ALL, ConfigError
from tests.helpers.config import compose
from tests.helpers.runs import run_inprocess

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = ["task=digits", "trainer.device=cpu", "trainer.max_steps=6", "trainer.eval_every=3", "trainer.threads=1"]


def test_library_default_is_the_composed_cli_default_and_the_yaml_holds_no_values():
    composed = OmegaConf.to_container(compose([]).trainer, resolve=True)
    assert dataclasses.asdict(TrainerConfig()) == composed
    assert trainer_config(None) == TrainerConfig() and TrainerConfig().name == "default"
    assert "trainer" not in {reg.group for reg in ALL}          # one option: typed directly, no registry
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
        summary = run_inprocess([*FAST, "trainer.plot=true"], tmp_path / "r")
    assert summary["status"] == "completed" and not (tmp_path / "r" / "curves.png").exists()
    assert any("curves.png not written (RuntimeError: no display backend)" in r.getMessage() for r in caplog.records)


# --- process-wide switches set both ways ------------------------------------------------------------------

def settings(**kw):
    return trainer_config(OmegaConf.create({"channels_last": "auto", "tf32": "auto", "deterministic": False, **kw}))


def test_flush_denormal_of_an_earlier_run_does_not_leak_into_the_next():
    model = torch.nn.Linear(2, 2)
    tiny = torch.tensor([1e-39])                       # a float32 denormal
    try:
        device_settings(model, settings(flush_denormal=True), torch.device("cpu"))
        assert float(tiny * 1.0) == 0.0                # flushed
        device_settings(model, settings(flush_denormal=False), torch.device("cpu"))
        assert float(tiny * 1.0) != 0.0                # the next run computes with denormals again
    finally:
        torch.set_flush_denormal(False)


def test_tf32_of_an_earlier_run_does_not_leak_into_a_deterministic_one(monkeypatch):
    """The backend flags can be set without a GPU: check the values a CUDA run would get."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")     # restored after the test
    model = torch.nn.Linear(2, 2)
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        device_settings(model, settings(), torch.device("cuda"))
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.benchmark
        device_settings(model, settings(deterministic=True), torch.device("cuda"))
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.benchmark
        assert torch.backends.cudnn.allow_tf32 == CUDNN_TF32_DEFAULT
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved


def test_seed_everything_sets_deterministic_algorithms_either_way():
    """trainer.deterministic leaves no leftover from a previous job in the same process (the call is skipped
    only when the state already matches)."""
    import torch

    from contnet.engine.run import seed_everything
    try:
        seed_everything(0, True)
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        seed_everything(0, False)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
