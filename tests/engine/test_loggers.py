"""Loggers as registry entries: fn(cfg, run_dir, config, group, name) -> an extra logger or None."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from contnet.engine.loggers import TensorBoardLogger, WandbLogger
from contnet.errors import ConfigError
from contnet.registry import LOGGERS
from tests.helpers.config import compose


@pytest.mark.parametrize("name", ["jsonl", "tensorboard", "wandb"])
def test_every_logger_option_is_an_entry_whose_default_is_the_cli_default(name):
    assert name in LOGGERS
    node = OmegaConf.to_container(compose([f"logger={name}"]).logger, resolve=True)
    assert node == OmegaConf.to_container(OmegaConf.structured(LOGGERS.config(name)()))


def test_jsonl_adds_nothing_tensorboard_and_wandb_add_their_logger(tmp_path):
    assert LOGGERS.get("jsonl")(compose().logger, tmp_path / "j", {}, None, None) is None
    tb = LOGGERS.get("tensorboard")(compose(["logger=tensorboard"]).logger, tmp_path / "t", {}, None, None)
    assert isinstance(tb, TensorBoardLogger)
    tb.log({"step": 1, "train/loss": 0.5})
    tb.close("completed")
    assert list((tmp_path / "t" / "tensorboard").glob("events.out.tfevents.*"))
    cfg = compose(["logger=wandb", "logger.mode=offline", "logger.tags=[a,b]"])
    wb = LOGGERS.get("wandb")(cfg.logger, tmp_path / "w", {"seed": 0}, "g", "n")
    assert isinstance(wb, WandbLogger) and wb.run.group == "g" and list(wb.run.tags) == ["a", "b"]
    wb.close("completed")


@pytest.mark.parametrize("override,message", [
    ("logger.mode=sometimes", "logger.mode=sometimes: must be one of online, offline, disabled"),
    ("logger.init_timeout=0", "logger.init_timeout=0: must be a number > 0"),
    ("logger.tags=oops", "logger.tags=oops: must be a list of strings (default [])"),
])
def test_wandb_rules_live_on_its_config(override, message, tmp_path):
    with pytest.raises(ConfigError) as e:
        LOGGERS.get("wandb")(OmegaConf.to_container(compose(["logger=wandb"]).logger) | dict(
            [override.removeprefix("logger.").split("=")]), tmp_path, {}, None, None)
    assert str(e.value) == message


def test_group_is_a_key_of_wandb_only(tmp_path):
    with pytest.raises(ConfigError, match=r"^logger.group=g: unknown key for logger=jsonl; its keys are: name$"):
        LOGGERS.get("jsonl")({"group": "g"}, tmp_path, {}, None, None)
    assert compose(["logger=wandb", "logger.group=sweep1"]).logger.group == "sweep1"
