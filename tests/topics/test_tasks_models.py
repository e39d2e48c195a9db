"""Tasks give the shapes models are built from; every model option builds and runs a step on its task."""
from __future__ import annotations

import pytest
import torch

from contnet.registry import MODELS, SCHEDULERS, TASKS
from tests.helpers.config import compose


def build(overrides):
    from contnet.engine.run import resolve_auto
    cfg = compose(overrides)
    resolve_auto(cfg)
    task = TASKS.get(cfg.task.name)(cfg.task, 0)
    return cfg, task, MODELS.get(cfg.model.name)(cfg.model, task)


@pytest.mark.parametrize("task,shape,objective", [
    ("digits", (64,), "classify"), ("digits_ae", (64,), "reconstruct"), ("mnist1d", (40,), "classify"),
    ("parity", (10,), "classify"),
])
def test_embedded_tasks(task, shape, objective):
    cfg = compose([f"task={task}"])
    t = TASKS.get(task)(cfg.task, 0)
    assert t.meta.input_shape == shape and t.meta.objective == objective
    sizes = t.meta.sizes
    assert sizes["train"] > sizes["val"] > 0 and sizes["test"] > 0
    # the split is fixed: rebuilding gives the same tensors
    assert torch.equal(TASKS.get(task)(cfg.task, 5).tensors("val")[0], t.tensors("val")[0])


def test_parity_labels_are_parity():
    cfg = compose(["task=parity", "task.n_bits=6", "task.signed=false"])
    x, y = TASKS.get("parity")(cfg.task, 0).tensors("train")
    assert torch.equal(x.sum(1).long() % 2, y)


def test_centering_uses_training_mean_for_every_split():
    cfg = compose(["task=digits_ae", "task.center=true"])
    t = TASKS.get("digits_ae")(cfg.task, 0)
    assert t.tensors("train")[0].mean(0).abs().max() < 1e-5
    assert t.tensors("val")[0].mean(0).abs().max() > 1e-3      # val is shifted by the *training* mean


@pytest.mark.parametrize("overrides,out_shape", [
    (["model=mlp"], (4, 10)),
    (["model=mlp", "task=digits_ae"], (4, 64)),
    (["model=resnet"], (4, 10)),                                   # fc variant on vectors
    (["model=resnet", "task=mnist1d", "model.activation=tanh"], (4, 10)),
])
def test_models_take_shapes_from_the_task(overrides, out_shape):
    cfg, task, model = build(overrides)
    x = task.tensors("train")[0][:4]
    assert model(x).shape == out_shape
    loss = task.loss(model, task.tensors("train") and tuple(t[:4] for t in task.tensors("train")))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_autoencoder_has_the_code_bottleneck():
    _, _, model = build(["task=digits_ae", "task.code_size=3", "model.widths=[32,16]"])
    assert [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)] == [32, 16, 3]
    assert [m.out_features for m in model.decoder if isinstance(m, torch.nn.Linear)] == [16, 32, 64]


@pytest.mark.parametrize("variant,shape", [("cifar", (3, 32, 32)), ("resnet18", (1, 64, 64))])
def test_image_resnets(variant, shape):
    from omegaconf import OmegaConf

    from contnet.tasks.base import TaskMeta, TensorTask
    task = TensorTask(TaskMeta("fake", "classify", shape, 10), {"train": (torch.rand(2, *shape), torch.zeros(2).long())})
    cfg = OmegaConf.create({"name": "resnet", "variant": variant, "depth": 20, "width_mult": 1, "width": 8,
                            "blocks": 1, "activation": "relu", "homotopy": False})
    model = MODELS.get("resnet")(cfg, task)
    assert model(torch.rand(2, *shape)).shape == (2, 10)
    if variant == "cifar":     # ResNet-20: 0.27 M parameters (He et al. 2016, Table 6)
        assert abs(sum(p.numel() for p in model.parameters()) - 272_474) < 1_000


@pytest.mark.parametrize("name,check", [
    ("cosine", lambda lrs: lrs[0] == 1.0 and lrs[-1] < 0.01),
    ("linear_warmup", lambda lrs: lrs[0] < lrs[50] and abs(lrs[99] - 1.0) < 1e-9 and lrs[-1] < 0.0101),
    ("step", lambda lrs: lrs[0] == 1.0 and abs(lrs[-1] - 0.1) < 1e-12),
])
def test_schedulers(name, check):
    cfg = compose([f"scheduler={name}", "scheduler.step_size=100" if name == "step" else f"scheduler.name={name}"])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = SCHEDULERS.get(name)(cfg.scheduler, opt, 200)
    lrs = []
    for _ in range(200):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert check(lrs), lrs[::20]
