"""The engine's pieces by hand: build a run from a composed config and fit it with a chosen precision, the
records kept in memory (no run directory contract, no CLI)."""
from __future__ import annotations

import torch

from contnet.engine.config import trainer_config
from contnet.engine.loop import fit
from contnet.engine.run import build, resolve_auto
from contnet.engine.setup import Precision, Setup
from tests.helpers.config import compose


def fp16(**kw) -> Precision:
    """fp16 on CPU (autocast has it) with a CPU GradScaler, so the fp16 path of the loop runs without a GPU."""
    return Precision("cpu", torch.float16, torch.amp.GradScaler("cpu", **kw))


class Records:
    """A logger that keeps the records."""

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


def train_with(tmp_path, precision: Precision, overrides: list[str], steps: int, optimizer_class=None):
    """`steps` steps of the composed run on CPU under `precision` (no evaluation, no checkpoint); returns the
    model, its parameters before training and the Records logger.  optimizer_class: a torch optimizer class
    used instead of the configured one (lr 0.05)."""
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
