"""One source of truth for configuration (issue 12): every option of every group has a typed config that
is the Hydra schema of its YAML, the library default of the option, and what its builder receives."""
from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from contnet.errors import ConfigError
from contnet.registry import ALL, OPTIMIZERS, Registry
from contnet.schema import Options, opt, typed
from contnet.validation import group_options
from tests.helpers.cli import BOTH_CLIS, cli_inprocess
from tests.helpers.config import compose, compose_option


OPTIONS = [(reg.group, name) for reg in ALL for name in reg.names()] + [("trainer", "default")]


@pytest.mark.parametrize("group,name", OPTIONS, ids=[f"{g}={n}" for g, n in OPTIONS])
def test_every_option_composes_to_its_typed_config_and_equals_the_library_default(group, name):
    cls = group_options(group)[name]
    assert cls is not None and issubclass(cls, Options), f"{group}={name} has no typed config"
    node = compose_option(group, name)[group]
    assert OmegaConf.get_type(node) is cls, f"conf/{group}/{name}.yaml does not use schema/{group}/{name}"
    assert OmegaConf.to_object(node) == cls(), f"{group}={name}: the YAML sets values that differ from {cls.__name__}()"
    # the name comes from registration (no class restates it): the library default, the composed node and
    # the typed config of a node without a name all carry the key
    assert cls().name == node.name == typed(cls, node).name == typed(cls, {}).name == name


def test_no_option_class_restates_its_registry_key():
    """`name: str = "<key>"` in a class body under contnet/ (the base Options' empty default aside) would be a second
    source for what `Registry.register` sets."""
    root = Path(__file__).resolve().parents[1] / "contnet"
    found = []
    for path in sorted(root.rglob("*.py")):
        for cls in (n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef)):
            for stmt in cls.body:
                if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                        and stmt.target.id == "name" and isinstance(stmt.value, ast.Constant)
                        and isinstance(stmt.value.value, str)
                        and not (path.name == "schema.py" and cls.name == "Options" and stmt.value.value == "")):
                    found.append(f"{path.relative_to(root.parent)}:{stmt.lineno} {cls.name}")
    assert not found, f"option classes that restate their name (registration sets it): {found}"


def test_a_class_under_two_keys_is_named_by_the_key_it_was_chosen_by():
    reg = Registry("thing", "contnet.optim")
    reg._loaded = True

    @dataclass
    class SharedConfig(Options):
        size: int = 3

    built = [reg.register(key, config=SharedConfig)(lambda cfg: cfg) for key in ("small", "large")]
    assert [b(None).name for b in built] == ["small", "large"]
    assert built[1]({"size": 4}) == SharedConfig(name="large", size=4)
    assert SharedConfig().name == "small" and SharedConfig.option == "small"     # the class's own: its first key


def test_the_builder_receives_its_typed_config_whatever_it_is_given():
    reg = Registry("thing", "contnet.optim")
    reg._loaded = True                          # a toy registry: nothing to import

    @dataclass
    class ThingConfig(Options):
        size: int = opt(3, gt=0)

    seen = []

    @reg.register("thing", config=ThingConfig)
    def build(cfg, extra):
        seen.append((cfg, extra))
        return cfg.size

    assert build(OmegaConf.create({"size": 5}), "x") == 5
    assert build({"size": 7}, "y") == 7 and build(None, "z") == 3
    assert all(isinstance(c, ThingConfig) and c.name == "thing" for c, _ in seen)
    with pytest.raises(ConfigError, match=r"^thing.size=0: must be a number > 0$"):
        build({"size": 0}, None)
    with pytest.raises(ConfigError, match=r"^thing.colour=red: unknown key for thing=thing; its keys are: name, size$"):
        build({"colour": "red"}, None)
    with pytest.raises(ConfigError, match=r"^thing.size=big: must be an integer > 0 \(default 3\)$"):
        build({"size": "big"}, None)


def test_typed_rejects_unknown_keys_added_with_plus():
    cfg = compose(["+optimizer.bogus=1"])        # `+` opens the node; the schema check still refuses it
    cls = OPTIMIZERS.config(cfg.optimizer.name)
    with pytest.raises(ConfigError, match=r"^optimizer.bogus=1: unknown key for optimizer=adam"):
        typed(cls, cfg.optimizer)


def test_one_npacs_node_serves_every_npacs_optimizer():
    from contnet.continuation.npacs import NPACSOptions
    npacs = [n for n in OPTIMIZERS.names() if issubclass(OPTIMIZERS.config(n), NPACSOptions)]
    assert sorted(npacs) == ["cadam", "continuation", "crmsprop"]
    keys = [f.name for f in dataclasses.fields(NPACSOptions)]
    authors = [OmegaConf.to_container(compose([f"optimizer={n}", "optimizer/npacs=authors"]).optimizer) for n in npacs]
    default = OmegaConf.to_container(compose(["optimizer=cadam"]).optimizer)
    assert all({k: a[k] for k in keys} == {k: authors[0][k] for k in keys} for a in authors)
    assert authors[0]["delta_l"] != default["delta_l"]       # the preset changes the shared block


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_an_unknown_key_in_a_preset_is_rejected(tmp_path, cli):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "typo.yaml").write_text("# @package _global_\noptimizer:\n  lrr: 0.1\n")
    res = cli(["train", f"hydra.searchpath=[file://{tmp_path}]", "experiment=typo",
               f"hydra.run.dir={tmp_path / 'r'}"], tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "Traceback" not in res.stderr
    assert "optimizer.lrr" in res.stderr and "lr" in res.stderr
    assert not (tmp_path / "r").exists()


def test_a_wrong_type_in_one_job_of_a_sweep_stops_every_job(tmp_path):
    sweep = tmp_path / "s"
    res = cli_inprocess(["train", "-m", f"hydra.sweep.dir={sweep}", "trainer.max_steps=3", "optimizer.lr=1e-3,fast"],
                        tmp_path)      # a sweep refused by the real process: test_validation (one bad value)
    assert res.returncode == 2
    assert res.stderr.strip() == "error: optimizer.lr=fast: must be a number > 0 (default 0.001)"
    assert not sweep.exists()


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_a_shared_block_on_an_option_without_it_names_the_options_that_have_it(tmp_path, cli):
    res = cli(["train", "optimizer=adam", "optimizer/npacs=authors", f"hydra.run.dir={tmp_path / 'r'}"], tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip() == ("error: optimizer/npacs=authors: optimizer=adam has no optimizer/npacs block; "
                                  "it applies to optimizer=cadam, continuation, crmsprop")
    assert not (tmp_path / "r").exists()


def test_a_node_typed_again_is_a_fresh_equal_instance_and_a_bad_one_is_refused_every_time():
    """typed() keeps each checked node per process (a study types the same blocks for every run): the second
    answer equals the first but is its own object, so a builder that changes it changes no later run's."""
    from contnet.optim.standard import AdamOptions
    node = OmegaConf.create({"name": "adam", "lr": 0.0123, "betas": [0.8, 0.99]})
    first = typed(AdamOptions, node)
    first.lr, first.betas = 1.0, [0.0, 0.0]
    second = typed(AdamOptions, node)
    assert second is not first and second.lr == 0.0123 and list(second.betas) == [0.8, 0.99]
    assert typed(AdamOptions, {"name": "adam", "lr": 0.5}).lr == 0.5
    for _ in range(2):
        with pytest.raises(ConfigError, match="lr"):
            typed(AdamOptions, {"name": "adam", "lr": -1.0})
