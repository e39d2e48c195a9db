"""Image augmentation and normalization (contnet/tasks/augment.py): batched crop+flip equals a per-image
reference, batches keep shapes and labels, are deterministic per seed, evaluation never augments, and
normalization uses the training split's per-channel statistics."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from contnet.registry import TASKS, ConfigError
from contnet.tasks.augment import AugmentedImageTask, crop_flip, image_task
from contnet.tasks.base import TaskMeta, TensorTask
from tests.helpers.config import compose
from tests.helpers.data import image_task_pair as task_pair
from tests.helpers.data import images, write_cifar


def test_crop_flip_equals_the_per_image_reference():
    x, _ = images(12)
    g = torch.Generator().manual_seed(0)
    pad = 3
    dy, dx = torch.randint(0, 2 * pad + 1, (2, 12), generator=g)
    flip = torch.rand(12, generator=g) < 0.5
    out = crop_flip(x, dy, dx, flip, pad)
    for k in range(12):
        ref = F.pad(x[k], (pad, pad, pad, pad))[:, dy[k]:dy[k] + 8, dx[k]:dx[k] + 8]
        ref = ref.flip(-1) if flip[k] else ref
        assert torch.equal(out[k], ref)
    centre = crop_flip(x, torch.full((12,), pad), torch.full((12,), pad), torch.zeros(12, dtype=torch.bool), pad)
    assert torch.equal(centre, x)                                 # offset = pad, no flip: the image itself


def epoch(task, seed, bs=8):
    return list(task.train_batches(bs, torch.Generator().manual_seed(seed), "cpu"))


def test_batches_keep_shapes_and_labels_and_really_change_the_images():
    aug, plain = task_pair()
    a, p = epoch(aug, 0), epoch(plain, 0)
    assert len(a) == len(p) == 5
    for (xa, ya), (xp, yp) in zip(a, p):
        assert xa.shape == xp.shape == (8, 3, 8, 8) and xa.dtype == xp.dtype
        assert torch.equal(ya, yp)                               # same examples in the same order
    assert not all(torch.equal(xa, xp) for (xa, _), (xp, _) in zip(a, p))


def test_augmentation_is_deterministic_per_seed():
    aug, _ = task_pair()
    same = zip(epoch(aug, 3), epoch(aug, 3))
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in same)
    assert not all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(epoch(aug, 3), epoch(aug, 4)))


def test_evaluation_never_augments():
    aug, plain = task_pair()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
    for split in ("train", "val"):
        assert aug.evaluate(model, split, 8, "cpu") == plain.evaluate(model, split, 8, "cpu")
    assert torch.equal(aug.tensors("val")[0], plain.tensors("val")[0])


def test_cifar10_config_normalizes_and_augments_by_default(tmp_path, monkeypatch):
    write_cifar(tmp_path)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    base = ["task=cifar10", f"task.data_dir={tmp_path}", "task.download=false"]
    t = TASKS.get("cifar10")(compose(base).task, 0)
    assert isinstance(t, AugmentedImageTask) and t.pad == 4
    x_tr, x_val = t.tensors("train")[0], t.tensors("val")[0]
    assert torch.allclose(x_tr.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x_tr.std((0, 2, 3)), torch.ones(3), atol=1e-5)
    raw = TASKS.get("cifar10")(compose([*base, "task.normalize=false", "task.augment=false"]).task, 0)
    assert type(raw) is TensorTask
    mean, std = raw.tensors("train")[0].mean((0, 2, 3)), raw.tensors("train")[0].std((0, 2, 3))
    expect = (raw.tensors("val")[0] - mean[None, :, None, None]) / std[None, :, None, None]
    assert torch.allclose(x_val, expect, atol=1e-5)            # val uses the training statistics
    ae = TASKS.get("cifar10_ae")(compose(["task=cifar10_ae", f"task.data_dir={tmp_path}", "task.download=false"]).task, 0)
    assert type(ae) is TensorTask and float(ae.tensors("train")[0].std()) < 0.5     # autoencoders: not normalized


def test_augment_on_flattened_images_is_one_clear_error():
    x, y = images()
    task = TensorTask(TaskMeta("img", "classify", (192,), 10), {"train": (x.flatten(1), y)})
    with pytest.raises(ConfigError, match="task.flatten=true"):
        image_task({"augment": True}, task)


def test_cifar_resnet_preset_is_the_standard_recipe_and_trains(tmp_path, monkeypatch):
    from tests.helpers.runs import run_inprocess
    write_cifar(tmp_path)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    over = ["experiment=cifar_resnet", f"task.data_dir={tmp_path}", "task.download=false"]
    cfg = compose(over)
    o, t = cfg.optimizer, cfg.trainer
    assert (cfg.task.name, cfg.model.name, cfg.model.depth, o.name, cfg.scheduler.name) == \
        ("cifar10", "resnet", 20, "sgd", "cosine")
    assert (o.lr, o.momentum, o.nesterov, o.weight_decay, t.batch_size) == (0.1, 0.9, True, 5e-4, 128)
    assert cfg.task.augment and cfg.task.normalize and t.precision == "auto"
    s = run_inprocess([*over, "model.depth=8", "trainer.batch_size=16", "trainer.max_steps=3",
                       "trainer.device=cpu", "trainer.channels_last=true"], tmp_path / "r")
    assert s["status"] == "completed" and s["steps"] == 3


def test_device_settings_on_cpu_channels_last_and_precision_auto():
    from omegaconf import OmegaConf
    from contnet.engine.config import trainer_config
    from contnet.engine.setup import Precision, device_settings
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    device_settings(model, trainer_config(OmegaConf.create({"channels_last": "auto"})), torch.device("cpu"))
    assert model[0].weight.is_contiguous()                       # auto: NHWC on CUDA only
    device_settings(model, trainer_config(OmegaConf.create({"channels_last": True})), torch.device("cpu"))
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last) and not model[0].weight.is_contiguous()
    try:
        device_settings(model, trainer_config(OmegaConf.create({"flush_denormal": True})), torch.device("cpu"))
        assert float(torch.tensor([1e-40]) * 1.0) == 0.0          # denormals flushed (the Adam-moment slowdown)
    finally:
        torch.set_flush_denormal(False)
    assert float(torch.tensor([1e-40]) * 1.0) > 0.0
    precision = Precision.of("auto", torch.device("cpu"))
    with precision.autocast():
        assert not torch.is_autocast_enabled("cpu") and precision.scaler is None      # auto on CPU: fp32


def test_chunked_augmentation_gives_the_same_batches():
    """Crops are computed a chunk of batches at a time (fewer GPU launches): the batches do not depend on it."""
    aug, _ = task_pair()
    ref = list(aug.train_batches(8, torch.Generator().manual_seed(5), "cpu", chunk=1))
    for chunk in (2, 3, 16):
        got = list(aug.train_batches(8, torch.Generator().manual_seed(5), "cpu", chunk=chunk))
        assert len(got) == len(ref) == 5
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(got, ref))
