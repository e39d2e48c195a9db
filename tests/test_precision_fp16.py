"""fp16 goes through `optimizer.step(closure)` like every precision (docs/CONTRACTS.md): the closure scales
the loss, unscales the gradients (λ's too) and drops them when one is not finite.  CPU autocast has fp16,
so the loop is exercised here with a CPU GradScaler (the CLI keeps fp16 for CUDA)."""
from __future__ import annotations

import pytest
import torch

from contnet.engine.config import trainer_config
from contnet.engine.loop import fit
from contnet.engine.run import build, resolve_auto
from contnet.engine.setup import Precision, Setup
from tests.conftest import compose

pytestmark = pytest.mark.usefixtures("one_thread")


def fp16(**kw) -> Precision:
    return Precision("cpu", torch.float16, torch.amp.GradScaler("cpu", **kw))


class Records:
    def __init__(self):
        self.records = []

    def log(self, r):
        self.records.append(r)

    def summary(self, s):
        pass

    def close(self, s):
        pass

    def series(self, key):
        return [r[key] for r in self.records if key in r]


def train(tmp_path, precision: Precision, overrides: list[str], steps: int, optimizer_class=None):
    cfg = compose([*overrides, "trainer.device=cpu", f"trainer.max_steps={steps}", "trainer.eval_every=0",
                   "trainer.eval_train=false", "trainer.progress=false", "trainer.checkpoint_every_s=0"])
    resolve_auto(cfg)
    tcfg = trainer_config(cfg.trainer)
    torch.manual_seed(0)
    setup = Setup(torch.device("cpu"), precision)
    task, model, opt, sched = build(cfg, tcfg, 0, tmp_path, setup)
    if optimizer_class is not None:
        opt = optimizer_class(model.parameters(), lr=0.05)
    start = [p.detach().clone() for p in model.parameters()]
    logger = Records()
    summary = fit(model=model, task=task, optimizer=opt, scheduler=sched, tcfg=tcfg, run_dir=tmp_path, loggers=[logger],
                  seed=0, setup=setup)
    assert summary["status"] == "completed"
    return model, start, logger


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
