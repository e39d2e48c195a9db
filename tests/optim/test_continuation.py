"""Continuation optimizers × LR schedulers: a run stopped mid-way (SIGTERM → checkpoint) and resumed
equals the uninterrupted run bit for bit, including the logged lr.  Before the fix,
ContinuationOptimizer.load_state_dict replaced the inner optimizer's param_groups, so after a resume
the scheduler moved a stale copy: the inner optimizer trained at a frozen lr while the log showed the
scheduled one."""
from __future__ import annotations

import pytest

from tests.helpers.config import compose
from tests.helpers.runs import SignalAtStep as _SignalAtStep
from tests.helpers.runs import comparable, curves, read_metrics, run_inprocess


STEPS, CUT = 40, 23
SCHEDULERS = {"none": [], "cosine": [], "linear_warmup": ["scheduler.warmup_steps=10"],
              "step": ["scheduler.step_size=10", "scheduler.gamma=0.5"]}


def pairs():
    """Every optimizer with cosine and C-Adam with every scheduler in the fast suite; the other pairs slow."""
    for optimizer in ("cadam", "crmsprop", "parc"):
        for scheduler in SCHEDULERS:
            fast = optimizer == "cadam" or scheduler == "cosine"
            yield pytest.param(optimizer, scheduler, marks=() if fast else pytest.mark.slow,
                               id=f"{optimizer}-{scheduler}")


@pytest.mark.parametrize("optimizer, scheduler", list(pairs()))
def test_stop_and_resume_equals_the_uninterrupted_run(tmp_path, monkeypatch, optimizer, scheduler):
    from contnet.engine import run as run_mod
    over = ["task=digits_ae", f"optimizer={optimizer}", f"scheduler={scheduler}", *SCHEDULERS[scheduler],
            "model.width=16", f"trainer.max_steps={STEPS}", "trainer.eval_every=10", "trainer.batch_size=128",
            "trainer.eval_train=false", "optimizer.lr=3e-3", "trainer.threads=1",
            "trainer.log_every=1"]                      # records reach the loggers at their step (the signal's cue)
    ref = run_inprocess(over, tmp_path / "ref")
    make = run_mod.make_loggers
    monkeypatch.setattr(run_mod, "make_loggers", lambda *a, **k: [*make(*a, **k), _SignalAtStep(CUT)])
    cut = run_inprocess(over, tmp_path / "cut")
    monkeypatch.setattr(run_mod, "make_loggers", make)
    assert cut["status"] == "interrupted" and cut["steps"] == CUT + 1
    resumed = run_inprocess([*over, "trainer.resume=auto"], tmp_path / "cut")
    assert comparable(resumed) == comparable(ref)
    assert curves(tmp_path / "cut") == curves(tmp_path / "ref")
    lrs = [r["lr"] for r in read_metrics(tmp_path / "ref") if "lr" in r]
    lams = [r["lambda"] for r in read_metrics(tmp_path / "ref") if "lambda" in r]
    assert lams[CUT] < 1.0                              # the cut falls while the continuation is active
    assert (len(set(lrs[CUT:])) > 1) == (scheduler != "none")   # the lr really moves after the cut


def test_param_groups_follow_the_inner_optimizer_after_load_state_dict():
    """The torch.optim contract by construction: one param_groups object, whatever load_state_dict does."""
    from contnet.registry import MODELS, OPTIMIZERS, SCHEDULERS as SCHED, TASKS
    cfg = compose(["task=digits_ae", "optimizer=cadam", "scheduler=cosine", "model.width=16", "model.homotopy=true"])
    task = TASKS.get(cfg.task.name)(cfg.task, 0)
    model = MODELS.get(cfg.model.name)(cfg.model, task)
    opt = OPTIMIZERS.get("cadam")(cfg.optimizer, model)
    sched = SCHED.get("cosine")(cfg.scheduler, opt, 10)
    state = opt.state_dict()
    assert {"state", "param_groups", "continuation"} <= set(state)      # torch.optim's own layout
    opt.load_state_dict(state)
    assert opt.param_groups is opt.inner.param_groups and opt.state is opt.inner.state
    sched.step()        # (torch warns that no optimizer step came first; the lr moves all the same)
    assert opt.inner.param_groups[0]["lr"] == sched.get_last_lr()[0] < cfg.optimizer.lr
