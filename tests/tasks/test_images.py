"""torchvision tasks read small files written here in each dataset's on-disk format (no download)."""
from __future__ import annotations

import numpy as np
import pytest
import torchvision

from contnet.registry import TASKS, ConfigError
from tests.helpers.config import compose
from tests.helpers.data import write_cifar, write_idx
from tests.helpers.runs import run_inprocess


@pytest.mark.parametrize("task,folder,shape", [("mnist", "MNIST", (1, 28, 28)),
                                               ("fashion_mnist", "FashionMNIST", (1, 28, 28)),
                                               ("cifar10", None, (3, 32, 32))])
def test_torchvision_tasks_from_local_files(tmp_path, monkeypatch, task, folder, shape):
    if folder:
        write_idx(tmp_path, folder)
        n_train, n_test = 60, 20
    else:
        write_cifar(tmp_path)
        # the files are ours, so torchvision's md5 check of the official archive cannot pass
        monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
        monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
        n_train, n_test = 60, 10
    cfg = compose([f"task={task}", f"task.data_dir={tmp_path}", "task.download=false",
                   "++task.normalize=false"])          # raw [0, 1] pixels (cifar10 normalizes by default)
    t = TASKS.get(task)(cfg.task, 0)
    assert t.meta.input_shape == shape and t.meta.output_dim == 10
    assert t.meta.sizes == {"train": n_train - 6 if folder else 54, "val": 6, "test": n_test}
    x = t.tensors("train")[0]
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    ae = TASKS.get(f"{task}_ae")(compose([f"task={task}_ae", f"task.data_dir={tmp_path}",
                                          "task.download=false"]).task, 0)
    assert ae.meta.objective == "reconstruct" and ae.meta.output_dim == int(np.prod(shape))


def test_training_on_local_mnist_files(tmp_path):
    write_idx(tmp_path, "MNIST")
    s = run_inprocess(["task=mnist", f"task.data_dir={tmp_path}", "task.download=false", "model=resnet",
                       "model.depth=8", "trainer.batch_size=16", "trainer.max_steps=3"], tmp_path / "r")
    assert s["status"] == "completed" and s["steps"] == 3


def test_missing_data_offline_names_the_path(tmp_path):
    cfg = compose(["task=mnist", f"task.data_dir={tmp_path / 'nowhere'}", "task.download=false"])
    with pytest.raises(ConfigError, match="nowhere"):
        TASKS.get("mnist")(cfg.task, 0)
