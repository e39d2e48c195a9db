"""Every option of every config group composes, and the composed choices match their registries."""
from __future__ import annotations

import pytest

from contnet.cli.main import config_groups
from contnet.registry import MODELS, OPTIMIZERS, PEFTS, SCHEDULERS, TASKS
from tests.helpers.config import compose

REGISTRY = {"model": MODELS, "optimizer": OPTIMIZERS, "task": TASKS, "peft": PEFTS, "scheduler": SCHEDULERS}
CASES = [(g, o) for g, opts in config_groups().items() if g not in ("experiment",) for o in opts]


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_group_option_composes(group, option):
    cfg = compose([f"{group}={option}"])
    assert cfg[group].name == option, f"conf/{group}/{option}.yaml must carry name: {option}"
    if group in REGISTRY:
        assert option in REGISTRY[group], f"{group}={option} has a YAML but no registered builder"


@pytest.mark.parametrize("group", sorted(REGISTRY))
def test_every_registered_builder_has_a_yaml(group):
    opts = set(config_groups()[group])
    missing = [n for n in REGISTRY[group].names() if n not in opts]
    assert not missing, f"registered {group} builders without conf/{group}/<name>.yaml: {missing}"


def test_defaults_are_the_embedded_digits_run():
    cfg = compose()
    assert (cfg.task.name, cfg.model.name, cfg.optimizer.name, cfg.peft.name) == ("digits", "mlp", "adam", "none")
    assert cfg.trainer.device == "auto" and cfg.seed == 0
