"""optimizer.fused (auto | true | false): torch's fused Adam/AdamW/SGD kernels.  auto = fused when the
parameters are on CUDA, unfused (today's numbers) elsewhere; the continuation optimizers' inner optimizer
picks the same kernel as the plain one, so C-Adam after λ = 1 is still exactly Adam.  torch 2.x runs the
fused kernels on CPU too, which is what lets these tests run them here."""
from __future__ import annotations

import copy

import pytest
import torch

from contnet.engine.run import build, resolve_auto
from contnet.engine.config import trainer_config
from contnet.engine.setup import Precision, Setup
from contnet.continuation.state import get_lambda
from contnet.optim import standard
from contnet.registry import OPTIMIZERS, ConfigError
from tests.helpers.cli import BOTH_CLIS, assert_one_line
from tests.helpers.config import compose
from tests.helpers.engine import train_with as train_fp16
from tests.helpers.engine import fp16
from tests.helpers.nets import npacs_cfg as cfg
from tests.helpers.nets import train_mse as run
from tests.helpers.nets import TinyNet, batches, params_equal
from tests.helpers.runs import read_metrics, run_inprocess

pytestmark = pytest.mark.usefixtures("one_thread")

SHORT = ["task=digits", "model=mlp", "trainer.max_steps=12", "trainer.eval_every=0", "trainer.eval_train=false",
         "trainer.checkpoint_every_s=0", "trainer.device=cpu"]


def built_optimizer(overrides: list[str], tmp_path):
    c = compose([*SHORT, *overrides])
    resolve_auto(c)
    tcfg = trainer_config(c.trainer)
    return build(c, tcfg, 0, tmp_path, Setup(torch.device("cpu"), Precision("cpu")))[2]


def losses(run_dir) -> list[float]:
    return [r["train/loss"] for r in read_metrics(run_dir) if "train/loss" in r]


def inner(optimizer):
    return getattr(optimizer, "inner", optimizer)


# --- auto on CPU: today's unfused path, the same numbers -------------------------------------------------

def test_auto_on_cpu_is_unfused_with_the_numbers_of_fused_false(tmp_path):
    assert inner(built_optimizer([], tmp_path / "b")).defaults["fused"] is None     # torch's unfused default
    auto = run_inprocess([*SHORT, "optimizer.fused=auto"], tmp_path / "auto")
    off = run_inprocess([*SHORT, "optimizer.fused=false"], tmp_path / "off")
    assert auto["status"] == off["status"] == "completed"
    assert len(losses(tmp_path / "auto")) == 12
    assert losses(tmp_path / "auto") == losses(tmp_path / "off")


# --- fused=true on CPU through the real CLI ---------------------------------------------------------------

@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_fused_true_on_cpu_runs_through_the_cli_close_to_unfused(tmp_path, cli):
    args = ["train", *SHORT, "trainer.progress=false"]
    fused = cli([*args, f"hydra.run.dir={tmp_path / 'fused'}", "optimizer.fused=true"], tmp_path)
    plain = cli([*args, f"hydra.run.dir={tmp_path / 'plain'}", "optimizer.fused=false"], tmp_path)
    assert fused.returncode == 0 and plain.returncode == 0, fused.stderr[-2000:] + plain.stderr[-2000:]
    a, b = losses(tmp_path / "fused"), losses(tmp_path / "plain")
    assert len(a) == len(b) == 12
    assert torch.allclose(torch.tensor(a), torch.tensor(b), rtol=1e-4, atol=1e-6)
    assert inner(built_optimizer(["optimizer.fused=true"], tmp_path / "b")).defaults["fused"] is True


@pytest.mark.parametrize("name", ["adamw", "sgd", "cadam", "parc"])
def test_fused_true_reaches_every_optimizer_with_a_fused_kernel(tmp_path, name):
    homotopy = ["model.homotopy=true"] if name in ("cadam", "parc") else []
    opt = built_optimizer([f"optimizer={name}", "optimizer.fused=true", *homotopy], tmp_path)
    assert inner(opt).defaults["fused"] is True
    assert type(inner(opt)).__name__.lower() == {"cadam": "adam", "parc": "adam"}.get(name, name)


# --- auto on CUDA (the device check patched): fused where torch has the kernel ----------------------------

@pytest.mark.parametrize("overrides,fused", [
    ([], True),
    (["optimizer=adamw"], True),
    (["optimizer=sgd"], True),
    (["optimizer=cadam", "model.homotopy=true"], True),
    (["optimizer=parc", "model.homotopy=true"], True),
    (["optimizer=continuation", "optimizer.inner=sgd", "model.homotopy=true"], True),
    (["optimizer=rmsprop"], None),                    # torch has no fused RMSprop: auto stays unfused
    (["optimizer=crmsprop", "model.homotopy=true"], None),
    (["optimizer.foreach=true"], None),               # foreach asked for: auto respects it
    (["optimizer.fused=false"], None),
])
def test_auto_picks_fused_when_the_parameters_are_on_cuda(tmp_path, monkeypatch, overrides, fused):
    monkeypatch.setattr(standard, "params_device", lambda params: "cuda")
    opt = inner(built_optimizer(overrides, tmp_path))
    assert opt.defaults.get("fused") is fused
    assert opt.defaults["foreach"] is (True if "optimizer.foreach=true" in overrides else None)


def test_fused_true_on_a_device_without_the_kernel_is_a_config_error(monkeypatch):
    import torch.utils._foreach_utils as fu
    monkeypatch.setattr(fu, "_get_fused_kernels_supported_devices", lambda: ["cuda"])
    with pytest.raises(ConfigError, match=r"^optimizer.fused=true: torch's fused Adam does not run on cpu .*"
                                          r"use optimizer.fused=auto"):
        OPTIMIZERS.get("adam")({"name": "adam", "fused": True}, TinyNet())
    assert OPTIMIZERS.get("adam")({"name": "adam", "fused": "auto"}, TinyNet()).defaults["fused"] is None


# --- bitwise transparency: C-Adam is exactly Adam with the same kernel ------------------------------------

def test_cadam_fused_at_lambda_one_equals_adam_fused_bitwise():
    m1, m2, m3 = TinyNet(seed=4), TinyNet(seed=4), TinyNet(seed=4)
    opt = OPTIMIZERS.get("cadam")(cfg("cadam", l_init=1.0, fused=True), m1)
    assert opt.inner.defaults["fused"] is True
    ref = torch.optim.Adam(m2.parameters(), lr=1e-2, betas=(0.9, 0.999), eps=1e-8, fused=True)
    unfused = torch.optim.Adam(m3.parameters(), lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    data = batches(50)
    assert run(m1, opt, data) == run(m2, ref, data)
    assert params_equal(m1, m2)
    run(m3, unfused, data)
    assert not params_equal(m1, m3)          # the kernel shows in the numbers: both sides must pick the same


def test_cadam_fused_after_lambda_reaches_one_is_adam_fused_bitwise():
    model = TinyNet(seed=2)
    opt = OPTIMIZERS.get("cadam")(cfg("cadam", l_init=0.7, delta_l=0.1, delta_l_prev=0.25, delta_l_min=0.1,
                                      delta_l_max=0.1, adaptive=False, u_freq=3, fused=True), model)
    for i, xy in enumerate(batches(100)):
        run(model, opt, [xy])
        if get_lambda(model) == 1.0:
            break
    assert get_lambda(model) == 1.0 and i < 99
    twin = copy.deepcopy(model)
    bare = torch.optim.Adam(twin.parameters(), lr=1e-2, betas=(0.9, 0.999), eps=1e-8, fused=True)
    bare.load_state_dict(copy.deepcopy(opt.inner.state_dict()))
    rest = batches(40, seed=9)
    assert run(model, opt, rest) == run(twin, bare, rest)
    assert params_equal(model, twin)


# --- fp16: the closure unscales the gradients; the fused step takes them as they are ----------------------

def test_fused_adam_under_fp16_trains_like_unfused(tmp_path):
    fused_model, start, fused_log = train_fp16(tmp_path / "f", fp16(), ["optimizer.fused=true"], 6)
    plain_model, _, plain_log = train_fp16(tmp_path / "p", fp16(), ["optimizer.fused=false"], 6)
    assert any(not torch.equal(p, q) for p, q in zip(fused_model.parameters(), start))
    a, b = fused_log.series("train/loss"), plain_log.series("train/loss")
    assert len(a) == 6 and torch.allclose(torch.tensor(a), torch.tensor(b), rtol=1e-3, atol=1e-5)
    for p, q in zip(fused_model.parameters(), plain_model.parameters()):
        assert torch.allclose(p, q, rtol=1e-3, atol=1e-5)


def test_fused_adam_under_fp16_skips_the_step_on_overflow(tmp_path):
    precision = fp16(init_scale=2.0 ** 100)
    model, start, _ = train_fp16(tmp_path, precision, ["optimizer.fused=true"], 1)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), start))
    assert precision.scaler.get_scale() == 2.0 ** 99


# --- bad values: one line, exit 2, nothing written --------------------------------------------------------

@pytest.mark.parametrize("args,words", [
    (["optimizer.fused=yes"], ["optimizer.fused=yes", "one of true, false, auto"]),
    (["optimizer=rmsprop", "optimizer.fused=true"], ["optimizer.fused=true", "RMSprop has no fused kernel",
                                                     "optimizer.fused=auto"]),
    (["optimizer.fused=true", "optimizer.foreach=true"], ["optimizer.fused=true", "foreach=true",
                                                          "optimizer.foreach=null"]),
])
@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_bad_fused_values_are_refused_through_the_cli(tmp_path, args, words, cli):
    res = cli(["train", f"hydra.run.dir={tmp_path / 'run'}", "trainer.max_steps=2", *args], tmp_path)
    assert_one_line(res, *words)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("node,words", [
    ({"name": "adam", "fused": None}, "optimizer.fused=null: must be one of true, false, auto"),
    ({"name": "crmsprop", "fused": True}, "optimizer.fused=true: torch.optim.RMSprop has no fused kernel"),
    ({"name": "continuation", "inner": "rmsprop", "fused": True}, "RMSprop has no fused kernel"),
])
def test_bad_fused_values_in_the_library(node, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        OPTIMIZERS.get(node["name"])(node, TinyNet())


# --- resume: torch's load_state_dict restores the saved groups' flags -------------------------------------

@pytest.mark.parametrize("name", ["adam", "cadam"])
def test_a_loaded_state_keeps_the_kernel_it_was_saved_with(name):
    saved_model, model = TinyNet(seed=1), TinyNet(seed=1)
    node = dict(cfg(name, l_init=1.0)) if name == "cadam" else {"name": "adam", "lr": 1e-2}
    saved = OPTIMIZERS.get(name)({**node, "fused": True}, saved_model)
    run(saved_model, saved, batches(3))
    resumed = OPTIMIZERS.get(name)({**node, "fused": "auto"}, model)     # auto on CPU: unfused
    assert inner(resumed).param_groups[0]["fused"] is None
    model.load_state_dict(saved_model.state_dict())
    resumed.load_state_dict(copy.deepcopy(saved.state_dict()))
    assert inner(resumed).param_groups[0]["fused"] is True
    rest = batches(5, seed=3)
    assert run(model, resumed, rest) == run(saved_model, saved, rest)
    assert params_equal(model, saved_model)
