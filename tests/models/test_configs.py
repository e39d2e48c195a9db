"""Typed model configs (issue 12): one class per model option is its CLI default, its library default and
what its builder receives; rules live on the fields."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from omegaconf import OmegaConf

from contnet.errors import ConfigError
from contnet.models.common import ModelConfig
from contnet.registry import MODELS
from tests.helpers import REPO
from tests.helpers.config import compose

CONF = REPO / "conf" / "model"
NAMES = MODELS.names()


def test_every_conf_model_yaml_is_a_registered_option():
    assert sorted(p.stem for p in CONF.glob("*.yaml")) == NAMES
    assert NAMES == sorted(["gpt2", "gpt2-large", "gpt2-medium", "mlp", "resnet", "seq2d", "smollm2-135m",
                            "tiny-gpt2"])


@pytest.mark.parametrize("name", NAMES)
def test_class_default_is_the_composed_cli_node(name):
    cls = MODELS.config(name)
    assert issubclass(cls, ModelConfig) and cls.option == name and cls.group == "model"
    node = compose([f"model={name}"]).model
    assert OmegaConf.get_type(node) is cls
    assert OmegaConf.to_object(node) == cls()
    assert cls().name == name


@pytest.mark.parametrize("name", NAMES)
def test_the_yaml_holds_only_the_defaults_list(name):
    raw = OmegaConf.load(CONF / f"{name}.yaml")
    assert list(raw.keys()) == ["defaults"]
    assert list(raw.defaults) == [f"/schema/model/{name}@_here_", "_self_"]


def test_each_hub_gpt2_names_its_own_hub_id():
    for name in ("gpt2", "gpt2-medium", "gpt2-large"):
        assert MODELS.config(name)().hub_id == name
    assert len({MODELS.config(n) for n in NAMES}) == len(NAMES)      # one class per option


@pytest.mark.parametrize("name,node,message", [
    ("mlp", {"ae_widths": "wide"}, "model.ae_widths=wide: must be auto, null or a list of positive integers"),
    ("mlp", {"widths": [32, 0]}, r"model.widths=\[32,0\]: must be a list of positive integers"),
    ("mlp", {"ae_widths": [8, -2]}, r"model.ae_widths=\[8,-2\]: must be a list of positive integers"),
    ("mlp", {"init": "he"}, "model.init=he: must be one of auto, default, xavier, orthogonal, pca"),
    ("mlp", {"activation": "swish"}, "model.activation=swish: must be one of relu, sigmoid, tanh, gelu"),
    ("mlp", {"homotopy": "maybe"}, "model.homotopy=maybe: must be one of auto, true, false"),
    ("mlp", {"depth": 0}, "model.depth=0: must be an integer > 0"),
    ("resnet", {"variant": "vgg"}, "model.variant=vgg: must be one of auto, fc, cifar, resnet18"),
    ("resnet", {"width_mult": 0}, "model.width_mult=0: must be an integer > 0"),
    ("tiny-gpt2", {"dropout": 1.0}, r"model.dropout=1: must be a number in \[0, 1\)"),
    ("tiny-gpt2", {"hub_id": "gpt2"}, "model.hub_id=gpt2: unknown key for model=tiny-gpt2"),
    ("gpt2", {"weights": "none"}, "model.weights=none: must be one of pretrained, random"),
    ("smollm2-135m", {"dtype": "float8"}, "model.dtype=float8: must be one of float32, bfloat16, float16"),
])
def test_a_bad_value_is_one_config_error_before_any_build(name, node, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        MODELS.get(name)(node, None)          # no task: the schema stops it first


def test_a_wrong_type_on_the_command_line_is_refused_by_the_schema():
    with pytest.raises(Exception) as e:
        compose(["model=resnet", "model.skip_homotopy=maybe"])
    assert "skip_homotopy" in str(e.value)


def test_library_users_pass_the_typed_config():
    from contnet.models.lm import TinyGPT2Config, build_gpt2
    from contnet.models.mlp import MLPConfig
    from contnet.tasks.base import TaskMeta, TensorTask
    task = TensorTask(TaskMeta("toy", "classify", (6,), 3), {"train": (torch.randn(4, 6), torch.zeros(4).long())})
    mlp = MODELS.get("mlp")(MLPConfig(widths=[5, 4], homotopy=False), task)
    assert [m.out_features for m in mlp.net if isinstance(m, torch.nn.Linear)] == [5, 4, 3]
    a = build_gpt2(TinyGPT2Config(homotopy=False, init_seed=3), None)
    b = build_gpt2({"name": "tiny-gpt2", "homotopy": False, "init_seed": 3}, None)   # a dict works too
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert dataclasses.replace(TinyGPT2Config(), dropout=0.1).dropout == 0.1


def test_language_models_say_they_need_no_task_and_the_others_do():
    assert {n for n in NAMES if not MODELS.config(n).needs_task} == {
        "gpt2", "gpt2-medium", "gpt2-large", "tiny-gpt2", "smollm2-135m"}
