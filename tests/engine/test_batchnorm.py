"""BatchNorm statistics at evaluation (contnet/engine/batchnorm.py): re-estimated from training batches
under the current weights, without touching training (its losses, its RNG)."""
from __future__ import annotations

import torch
from torch import nn

from contnet.engine.batchnorm import recalibrate
from tests.helpers import REPO

CONF = REPO / "conf"


def test_recalibrate_replaces_stale_statistics_with_the_batches_cumulative_ones():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU())
    bn = model[1]
    bn.running_mean.fill_(50.0)
    bn.running_var.fill_(1e4)                                  # stale: far from anything the weights give
    model.eval()
    batches = [torch.randn(16, 4) * (k + 1) for k in range(3)]
    rng_before = torch.get_rng_state()
    assert recalibrate(model, batches, lambda b: model(b)) == 3
    feats = [model[0](b).detach() for b in batches]
    torch.testing.assert_close(bn.running_mean, torch.stack([f.mean(0) for f in feats]).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack([f.var(0) for f in feats]).mean(0))
    assert bn.momentum == 0.1 and not model.training           # restored
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert recalibrate(nn.Linear(2, 2), batches, lambda b: None) == 0          # no BatchNorm: nothing to do


def digit_images():
    from sklearn.datasets import load_digits
    from contnet.tasks.base import TaskMeta, TensorTask
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    return TensorTask(TaskMeta("digit-images", "classify", (1, 8, 8), 10),
                      {"train": (x[:1400], y[:1400]), "val": (x[1400:], y[1400:])})


def test_recalibration_changes_evaluation_only(tmp_path, one_thread):
    """A conv ResNet with BatchNorm on 8×8 digit images: same training losses with and without it,
    different evaluations."""
    from omegaconf import OmegaConf

    from contnet.engine.config import trainer_config
    from contnet.engine.loop import fit
    from contnet.engine.setup import Setup
    from contnet.registry import MODELS
    task = digit_images()
    runs = {}
    for n in (0, 3):
        torch.manual_seed(0)
        model = MODELS.get("resnet")({"depth": 8, "homotopy": False}, task)     # the rest: ResNetConfig's defaults
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        tcfg = trainer_config(OmegaConf.create({
            "max_steps": 20, "eval_every": 10, "eval_train": False, "device": "cpu", "progress": False,
            "bn_recalibrate": n, "checkpoint_every_s": 0}))
        logs = []
        logger = type("L", (), {"log": lambda self, r: logs.append(r), "summary": lambda self, s: None,
                                "close": lambda self, s: None})()
        fit(model=model, task=task, optimizer=opt, scheduler=None, tcfg=tcfg, setup=Setup.prepare(tcfg, model, task),
            run_dir=tmp_path / str(n), loggers=[logger], seed=0)
        runs[n] = logs
    train = {n: [r["train/loss"] for r in recs if "train/loss" in r] for n, recs in runs.items()}
    assert train[0] == train[3] and len(train[0]) == 20
    val = {n: [r["val/loss"] for r in recs if "val/loss" in r] for n, recs in runs.items()}
    assert len(val[0]) == len(val[3]) == 3 and all(a != b for a, b in zip(val[0], val[3]))
