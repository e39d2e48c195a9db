"""Typed task configs (issue 12 §1): one class per task is its CLI default, its Hydra schema and what its
builder (and its file check) receives; bad keys, types and ranges are one ConfigError / one line, exit 2."""
from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from contnet.errors import ConfigError
from contnet.registry import TASK_CHECKS, TASKS
from contnet.tasks.common import ReconstructOptions
from contnet.tasks.images import CIFAR10Config, FashionMNISTConfig, MNISTAEConfig
from contnet.tasks.nlg_options import E2EConfig, WebNLGConfig
from contnet.tasks.vector import DigitsAEConfig, ParityConfig
from tests.helpers.config import compose

TASK_NAMES = ["cifar10", "cifar10_ae", "dart", "digits", "digits_ae", "e2e", "fashion_mnist", "fashion_mnist_ae",
              "mnist", "mnist1d", "mnist1d_ae", "mnist_ae", "parity", "webnlg"]
YAML_ONLY = {"model_name"}      # read from the model group by an interpolation: not a task default


def test_every_task_is_registered_with_its_own_class():
    assert TASKS.names() == TASK_NAMES
    classes = [TASKS.config(n) for n in TASK_NAMES]
    assert len(set(classes)) == len(classes)
    assert all(c().name == n for c, n in zip(classes, TASK_NAMES))


@pytest.mark.parametrize("name", TASK_NAMES)
def test_class_default_equals_the_composed_cli_node(name):
    cls = TASKS.config(name)
    node = compose([f"task={name}"]).task
    assert OmegaConf.get_type(node) is cls
    raw = OmegaConf.to_container(node, resolve=False)
    lib = dataclasses.asdict(cls())
    assert set(raw) == set(lib)
    assert {k: v for k, v in raw.items() if k not in YAML_ONLY} == {k: v for k, v in lib.items() if k not in YAML_ONLY}
    if name in TASK_CHECKS:                     # the file check receives the same typed config
        assert TASK_CHECKS.config(name) is cls


def test_image_and_reconstruction_options_are_shared_through_base_classes():
    assert issubclass(DigitsAEConfig, ReconstructOptions) and issubclass(MNISTAEConfig, ReconstructOptions)
    assert (CIFAR10Config().normalize, CIFAR10Config().augment) == (True, True)
    assert (FashionMNISTConfig().normalize, FashionMNISTConfig().augment) == (False, False)
    assert not hasattr(MNISTAEConfig(), "augment")          # autoencoders are never augmented
    assert (E2EConfig().download, WebNLGConfig().download) == (True, False)
    assert E2EConfig().generation.num_beams is None         # null: from task.scale


@pytest.mark.parametrize("name,node,message", [
    ("parity", {"n_bits": "ten"}, "task.n_bits=ten: must be an integer > 0 (default 10)"),
    ("parity", {"nbits": 3}, "task.nbits=3: unknown key for task=parity; its keys are: name, val_frac"),
    ("parity", {"n_bits": 0}, "task.n_bits=0: must be an integer > 0"),
    ("digits", {"val_frac": 0.6, "test_frac": 0.5}, "task.val_frac=0.6: with task.test_frac=0.5 the sum 1.1"),
    ("digits_ae", {"center": "maybe"}, "task.center=maybe: must be one of true, false, auto"),
    ("mnist1d", {"num_samples": 5}, "task.num_samples=5: must be at least 10"),
    ("mnist", {"flatten": True, "augment": True}, "task.flatten=true: task.augment and task.normalize need"),
    ("cifar10", {"augment_pad": -1}, "task.augment_pad=-1: must be an integer >= 0"),
    ("mnist_ae", {"augment": True}, "task.augment=true: unknown key for task=mnist_ae"),
    ("e2e", {"scale": "huge"}, "task.scale=huge: must be one of auto, full, cpu, smoke"),
    ("e2e", {"generation": {"num_beams": 0}}, "task.generation.num_beams=0: must be an integer > 0"),
    ("e2e", {"generation": {"num_beams": "x"}}, "task.generation.num_beams=x: must be an integer > 0 or null"),
    ("dart", {"generation": {"beams": 2}}, "task.generation.beams=2: unknown key for task.generation; its keys"),
    ("webnlg", {"format": "csv"}, "task.format=csv: must be one of auto, json"),
])
def test_the_builder_refuses_a_bad_key_type_or_value_with_one_config_error(name, node, message):
    with pytest.raises(ConfigError) as e:
        TASKS.get(name)(OmegaConf.create(node), 0)
    assert str(e.value).startswith(message) and "\n" not in str(e.value), str(e.value)
    if name in TASK_CHECKS:                      # before a run the CLI calls the check: same message
        with pytest.raises(ConfigError, match="^" + message.split(":")[0]):
            TASK_CHECKS.get(name)(node)


@pytest.mark.parametrize("args,line", [
    (["task=parity", "task.n_bits=2.5"], "task.n_bits=2.5: must be an integer > 0 (default 10)"),
    (["task.foo=1"], "task.foo=1: unknown key for task=digits; its keys are: name, val_frac, test_frac, split_seed"),
    (["task=e2e", "task.generation.foo=1"], "task.generation.foo=1: unknown key for task.generation; its keys are: "
                                            "num_beams, length_penalty"),
    (["task=e2e", "task.generation.num_beams=abc"], "task.generation.num_beams=abc: must be an integer > 0 or null"),
    (["task=mnist1d", "task.num_samples=0"], "task.num_samples=0: must be an integer > 0"),
    (["task=digits_ae", "task.center=maybe"], "task.center=maybe: must be one of true, false, auto"),
])
def test_a_bad_task_key_on_the_command_line_is_one_line_and_exit_2(args, line, tmp_path, monkeypatch, capsys):
    from contnet.cli.train import main
    monkeypatch.chdir(tmp_path)
    rc = main([f"hydra.run.dir={tmp_path / 'run'}", "trainer.progress=false", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"error: {line}"), err
    assert list(tmp_path.iterdir()) == []


def test_a_library_config_builds_the_same_task_as_the_cli():
    import torch
    from contnet.tasks.vector import ParityConfig as P
    lib = TASKS.get("parity")(P(n_bits=6, signed=False), 0)
    cli = TASKS.get("parity")(compose(["task=parity", "task.n_bits=6", "task.signed=false"]).task, 0)
    for split in ("train", "val", "test"):
        assert all(torch.equal(a, b) for a, b in zip(lib.tensors(split), cli.tensors(split)))
    assert ParityConfig().num_samples == 6000


@pytest.mark.parametrize("init,centred", [("pca", True), ("default", False)])
def test_center_auto_is_resolved_to_a_bool_in_the_typed_node(init, centred):
    from contnet.engine.run import resolve_auto
    cfg = compose(["task=digits_ae", f"model.init={init}"])
    assert cfg.task.center == "auto"
    resolve_auto(cfg)
    assert cfg.task.center is centred
    t = TASKS.get("digits_ae")(cfg.task, 0)
    assert (float(t.tensors("train")[0].mean(0).abs().max()) < 1e-5) is centred


def test_data_dir_null_means_contnet_data_at_use_time(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTNET_DATA", str(tmp_path / "a"))
    assert E2EConfig().root() == tmp_path / "a" / "e2e" and MNISTAEConfig().root() == tmp_path / "a"
    monkeypatch.setenv("CONTNET_DATA", str(tmp_path / "b"))      # read when used, not when imported
    assert CIFAR10Config().root() == tmp_path / "b"
    assert CIFAR10Config(data_dir=str(tmp_path / "c")).root() == tmp_path / "c"


@pytest.mark.parametrize("model,scale", [("tiny-gpt2", "smoke"), ("mlp", "full")])
def test_scale_auto_reads_the_model_name_through_the_yaml(model, scale):
    from contnet.schema import typed
    from contnet.tasks.e2e import resolve_scale
    cfg = typed(E2EConfig, compose(["task=e2e", f"model={model}"]).task)
    assert cfg.model_name == model and resolve_scale(cfg) == scale
