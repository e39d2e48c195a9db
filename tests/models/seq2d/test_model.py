"""`model=seq2d` in the registry: every pattern builds from task sizes; homotopy; config errors."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from contnet.continuation.state import find_lambda, set_lambda
from contnet.models.mlp import MLPConfig
from contnet.models.seq2d.model import Seq2DConfig
from contnet.registry import MODELS, ConfigError
from contnet.tasks.base import TaskMeta, TensorTask


def _cfg(**overrides):
    cfg = OmegaConf.structured(Seq2DConfig)
    cfg.homotopy = False  # the runner resolves `auto` before building
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def _task(objective="classify", d=12, classes=3, n=60):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    out = classes if objective == "classify" else d
    meta = TaskMeta("toy", objective, (d,), out, code_size=4 if objective == "reconstruct" else None)
    data = {"train": (x, y) if objective == "classify" else (x,)}
    return TensorTask(meta, data)


def test_the_typed_config_names_the_registry_key():
    assert Seq2DConfig().name == "seq2d" and MODELS.config("seq2d") is Seq2DConfig


@pytest.mark.parametrize("pattern", ["mlp", "resnet", "dense", "rnn"])
def test_every_pattern_builds_from_task_sizes(pattern):
    model = MODELS.get("seq2d")(_cfg(pattern=pattern, width=16, depth=2), _task())
    assert model(torch.randn(5, 12)).shape == (5, 3)
    assert find_lambda(model) is None


def test_grid_pattern_reads_named_sizes_and_layout():
    cfg = _cfg(pattern="grid", **{"grid.sizes": ["in", 8, "out"],
                                  "grid.layout": [["I", None, None], ["W", None, None], ["Z", "W", None]]})
    model = MODELS.get("seq2d")(cfg, _task())
    assert model.map.in_sizes == [12, 8, 3] and model.depth == 2
    assert model(torch.randn(5, 12)).shape == (5, 3)


def test_reconstruct_objective_builds_a_mirrored_autoencoder():
    model = MODELS.get("seq2d")(_cfg(widths=[10, 6]), _task("reconstruct"))
    assert model.map.in_sizes == [12, 10, 6, 4, 6, 10, 12]
    assert model(torch.randn(3, 12)).shape == (3, 12)


def test_homotopy_puts_one_lambda_on_every_hidden_slot():
    model = MODELS.get("seq2d")(_cfg(homotopy=True, pattern="dense", width=8), _task())
    assert find_lambda(model) is not None and find_lambda(model).get() == 1.0
    x = torch.randn(4, 12)
    set_lambda(model, 0.0)  # λ = 0: every activation is the identity, so the net is affine
    f0 = model(torch.zeros(1, 12))
    torch.testing.assert_close(model(2 * x) - f0, 2 * (model(x) - f0), atol=1e-5, rtol=1e-5)
    set_lambda(model, 1.0)
    assert not torch.allclose(model(2 * x) - f0, 2 * (model(x) - f0), atol=1e-3)


def test_masked_density_lowers_the_trainable_count():
    full = MODELS.get("seq2d")(_cfg(width=16), _task())
    sparse = MODELS.get("seq2d")(_cfg(width=16, density=0.25), _task())
    assert sparse.n_trainable() < 0.4 * full.n_trainable()


def test_a_few_adam_steps_reduce_the_loss():
    torch.manual_seed(0)
    task = _task()
    model = MODELS.get("seq2d")(_cfg(width=16, pattern="resnet", depth=1), task)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = task.tensors("train")
    first = task.loss(model, batch).item()
    for _ in range(30):
        opt.zero_grad()
        task.loss(model, batch).backward()
        opt.step()
    assert task.loss(model, batch).item() < 0.7 * first


@pytest.mark.parametrize("overrides, message", [
    ({"pattern": "hexagon"}, "model.pattern=hexagon: must be one of mlp, resnet"),
    ({"pattern": "grid"}, "model.pattern=grid: needs model.grid.layout"),
    ({"pattern": "grid", "grid.sizes": ["in", 0], "grid.layout": [["I", None], ["W", None]]},
     "model.grid.sizes=.*entry 0 must be a positive integer"),
    ({"density": 0.0}, r"model.density=0: must be a number in \(0, 1\]"),
    ({"widths": [8, -1]}, r"model.widths=\[8,-1\]: must be a list of positive integers"),
    ({"rnn.nonlinearity": "gelu", "pattern": "rnn"}, "model.rnn.nonlinearity=gelu: must be one of tanh, relu"),
    ({"pattern": "grid", "grid.sizes": ["in", "bogus"], "grid.layout": [["I", None], ["W", None]]},
     r"model.grid.sizes=\[in,bogus\]: entry 'bogus' must be"),
    ({"pattern": "grid", "grid.sizes": ["in", "out"], "grid.layout": [["I", None], ["Q", None]]},
     "layout cell 'Q'"),
    ({"resnet.skip": "cubic", "pattern": "resnet"}, "model.resnet.skip=cubic: must be one of identity"),
])
def test_config_errors_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        MODELS.get("seq2d")(_cfg(**overrides), _task())


def test_seq2d_mlp_and_model_mlp_are_the_same_network_for_the_same_seed():
    cfg_mlp = MLPConfig(homotopy=False)
    task = _task()
    torch.manual_seed(7)
    reference = MODELS.get("mlp")(cfg_mlp, task)
    torch.manual_seed(7)
    model = MODELS.get("seq2d")(_cfg(depth=cfg_mlp.depth, width=cfg_mlp.width), task)
    x = torch.randn(9, 12)
    assert torch.equal(model(x), reference(x))
    assert model.n_trainable() == sum(p.numel() for p in reference.parameters())


def test_summary_counts_exclude_masked_entries(tmp_path):
    from tests.helpers.runs import run_inprocess
    dense = run_inprocess(["model=seq2d", "trainer.max_steps=2"], tmp_path / "dense")
    masked = run_inprocess(["model=seq2d", "model.density=0.3", "trainer.max_steps=2"], tmp_path / "masked")
    assert dense["trainable_params"] == dense["total_params"] == masked["total_params"]
    assert masked["trainable_params"] < 0.5 * masked["total_params"]
