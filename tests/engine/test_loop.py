"""The loop (contnet/engine/loop.py).

fp16 goes through `optimizer.step(closure)` like every precision (docs/CONTRACTS.md): the closure scales
the loss, unscales the gradients (λ's too) and drops them when one is not finite.  CPU autocast has fp16,
so the loop is exercised here with a CPU GradScaler (the CLI keeps fp16 for CUDA).

Evaluation runs under torch.inference_mode() (tasks may opt out with `eval_inference_mode = False`), and
training afterwards still works: tensors a task caches during its first evaluation are normal tensors."""
from __future__ import annotations

import pytest
import torch

from contnet.engine.setup import Precision
from contnet.tasks.base import TensorTask
from tests.helpers.engine import train_with as train
from tests.helpers.engine import fp16
from tests.helpers.runs import run_inprocess

pytestmark = pytest.mark.usefixtures("one_thread")


class ClosureOnly(torch.optim.SGD):
    """Refuses a step without its closure: the engine must never call the closure itself."""

    def step(self, closure=None):
        assert closure is not None, "the engine called optimizer.step() without the closure"
        return super().step(closure)


def test_fp16_step_calls_the_closure_inside_optimizer_step(tmp_path):
    model, start, logger = train(tmp_path, fp16(), ["task=digits", "optimizer=sgd"], 5, optimizer_class=ClosureOnly)
    assert len(logger.series("train/loss")) == 5
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), start))


def test_fp16_non_finite_gradients_skip_the_step_and_back_off_the_scale(tmp_path):
    precision = fp16(init_scale=2.0 ** 100)     # the scaled fp16 gradients overflow: the step must be skipped
    model, start, _ = train(tmp_path, precision, ["task=digits", "optimizer=adam"], 1)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), start))
    assert precision.scaler.get_scale() == 2.0 ** 99


def test_parc_lambda_gradient_and_path_under_fp16_match_fp32(tmp_path):
    """PARC reads ∂L/∂λ after the closure: under fp16 it is unscaled (not 2^16 times too large, not lost),
    so λ follows the fp32 path."""
    over = ["task=digits_ae", "optimizer=parc"]
    m32, _, log32 = train(tmp_path / "fp32", Precision("cpu"), over, 64)
    m16, _, log16 = train(tmp_path / "fp16", fp16(), over, 64)
    g32, g16 = m32.homotopy_lambda.value.grad, m16.homotopy_lambda.value.grad
    assert g16 is not None and torch.isclose(g16, g32, rtol=2e-2), (g16, g32)
    lam32, lam16 = log32.series("lambda"), log16.series("lambda")
    assert lam16[-1] - lam16[0] > 0.3                     # λ moves under fp16
    assert abs(lam16[-1] - lam32[-1]) < 0.02


# --- evaluation under inference mode ----------------------------------------------------------------------

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
