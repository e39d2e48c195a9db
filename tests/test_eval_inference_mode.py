"""Evaluation runs under torch.inference_mode() (tasks may opt out with `eval_inference_mode = False`), and
training afterwards still works: tensors a task caches during its first evaluation are normal tensors."""
from __future__ import annotations

import pytest
import torch

from contnet.tasks.base import TensorTask
from tests.conftest import run_inprocess

RUN = ["trainer.max_steps=4", "trainer.eval_every=2", "model.width=16", "trainer.device=cpu", "trainer.batch_size=16"]


@pytest.mark.parametrize("opt_out", [False, True])
def test_evaluation_runs_under_inference_mode_unless_the_task_opts_out(tmp_path, monkeypatch, opt_out):
    seen = []
    original = TensorTask.evaluate

    def spy(self, *args, **kwargs):
        seen.append(torch.is_inference_mode_enabled())
        return original(self, *args, **kwargs)
    monkeypatch.setattr(TensorTask, "evaluate", spy)
    if opt_out:
        monkeypatch.setattr(TensorTask, "eval_inference_mode", False, raising=False)
    summary = run_inprocess(RUN, tmp_path)
    assert summary["status"] == "completed" and summary["steps"] == 4
    assert seen and all(flag is (not opt_out) for flag in seen)      # step 0, 2 and the final evaluation


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a CPU .to('cpu') copies nothing; the cache bug needs a copy")
def test_device_cache_made_during_an_inference_mode_evaluation_is_trainable():
    task = TensorTask.__new__(TensorTask)
    TensorTask.__init__(task, type("M", (), {"sizes": {}})(), {"train": (torch.randn(8, 3),)})
    with torch.inference_mode():
        x, = task.tensors("train", "cuda")
    assert not x.is_inference()
    w = torch.randn(3, 2, device="cuda", requires_grad=True)
    (x @ w).sum().backward()                       # an inference tensor here: "cannot be saved for backward"
    assert w.grad is not None
