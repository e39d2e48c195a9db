"""PEFT methods as registry entries with typed configs: peft=none is the identity, every builder gets its config."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from contnet.errors import ConfigError
from contnet.peft.io import save_for_run
from contnet.registry import PEFTS
from tests.helpers.config import compose


def small():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)          # a frozen parameter: peft=full would unfreeze it
    return model


@pytest.mark.parametrize("name", ["none", "full", "lora", "solo"])
def test_every_peft_option_is_an_entry_whose_default_is_the_cli_default(name):
    cls = PEFTS.config(name)
    node = OmegaConf.to_container(compose([f"peft={name}"]).peft, resolve=True)
    assert node == OmegaConf.to_container(OmegaConf.structured(cls()))


def test_none_is_the_identity_called_like_any_other_entry():
    model = small()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = PEFTS.get("none")(compose().peft, model, None)      # how the engine calls it, for every run
    assert out is model and not model[0].weight.requires_grad
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    full = PEFTS.get("full")(compose(["peft=full"]).peft, small(), None)
    assert all(p.requires_grad for p in full.parameters())


def test_none_saves_nothing_full_saves_unless_told_not_to(tmp_path):
    model = small()
    assert save_for_run(compose().peft, model, tmp_path / "a") is None
    assert save_for_run(PEFTS.config("none")(), model, tmp_path / "a") is None and not (tmp_path / "a").exists()
    assert save_for_run(compose(["peft=full", "peft.save_adapter=false"]).peft, model, tmp_path / "b") is None
    path = save_for_run(PEFTS.config("full")(), model, tmp_path / "c")
    assert (path / "model.safetensors").is_file()


@pytest.mark.parametrize("override,message", [
    ("peft.placement=ring", "peft.placement=ring: must be one of first_last, stride, symmetric, dense, pairs"),
    ("peft.rank=0", "peft.rank=0: must be an integer > 0"),
    ("peft.dropout=1.0", "peft.dropout=1: must be a number in [0, 1)"),
    ("peft.stride=1", "peft.stride=1: a long skip spans at least 2 blocks"),
    ("peft.lambda_driver=manual", "peft.lambda_driver=manual: must be one of auto, ramp, external"),
])
def test_solo_rules_live_on_its_config(override, message):
    with pytest.raises(ConfigError) as e:
        PEFTS.get("solo")(compose(["peft=solo", override]).peft, small(), None)
    assert str(e.value) == message


@pytest.mark.parametrize("override,message", [
    ("peft.r=0", "peft.r=0: must be an integer > 0"),
    ("peft.gpt2_qkv=joint", "peft.gpt2_qkv=joint: must be one of split, fused"),
    ("peft.targets=7", "peft.targets=7: must be auto or a list of module names, e.g. [q_proj,v_proj]"),
    ("+peft.rank=8", "peft.rank=8: unknown key for peft=lora; its keys are: "
                     "name, r, alpha, dropout, targets, gpt2_qkv, bias, save_adapter"),
])
def test_lora_rules_live_on_its_config(override, message):
    with pytest.raises(ConfigError) as e:
        PEFTS.get("lora")(compose(["peft=lora", override]).peft, small(), None)
    assert str(e.value) == message


def test_solo_lambda_driver_auto_follows_the_optimizer():
    from contnet.peft.solo import SoloConfig
    assert SoloConfig().driver() == "ramp"                       # library default: Solo's own ramp
    assert compose(["peft=solo"]).peft.continuation_optimizer is False
    cadam = compose(["peft=solo", "optimizer=cadam"]).peft
    assert cadam.continuation_optimizer is True
    assert PEFTS.config("solo")(**OmegaConf.to_container(cadam, resolve=True)).driver() == "external"
    warm = compose(["peft=solo", "scheduler=linear_warmup", "scheduler.warmup_steps=37"]).peft
    assert warm.lambda_ramp_steps == 37                          # the ramp follows the LR warm-up
