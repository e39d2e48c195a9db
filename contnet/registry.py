"""Name -> factory registries (timm style): the CLI name of a choice is its registry key.

Modules under contnet.{models,optim,tasks,peft,engine} register themselves on import; `Registry.get`
imports every submodule of its package once, so a new file with `@MODELS.register("x", config=XConfig)`
is found without editing a central list.  Keep heavy imports (transformers, torchvision) inside functions.

`config=` names the option's typed config (contnet.schema.Options): the builder then always receives an
instance of it (a DictConfig or dict argument is converted and checked first), whose `name` is the key it was
registered under (the class never restates it), and Hydra's ConfigStore makes it the Hydra schema of
conf/<group>/<name>.yaml (importing contnet.conf stores the classes of `ALL`, each with `name` = its key).
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Callable

from contnet.errors import ConfigError  # noqa: F401  (re-exported: `from contnet.registry import ConfigError`)
from contnet.schema import typed


class Registry:
    def __init__(self, kind: str, package: str, group: str | None = None):
        self.kind, self.package = kind, package
        self.group = group or kind              # the conf/ group its options live in
        self._items: dict[str, Callable] = {}
        self._configs: dict[str, type] = {}
        self._loaded = False

    def register(self, name: str, config: type | None = None):
        def deco(fn):
            if name in self._items and getattr(self._items[name], "__wrapped__", self._items[name]) is not fn:
                raise KeyError(f"{self.kind} '{name}' registered twice")
            if config is None:
                self._items[name] = fn
                return fn
            if not config.__dict__.get("option"):   # the class's own attribute, not a base class's
                config.group, config.option = self.group, name
            self._configs[name] = config

            @functools.wraps(fn)
            def build(cfg=None, *args, **kwargs):
                return fn(typed(config, cfg, option=name), *args, **kwargs)
            self._items[name] = build
            return build
        return deco

    def _load(self):
        if self._loaded:
            return
        self._loaded = True
        pkg = importlib.import_module(self.package)
        for mod in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{self.package}.{mod.name}")

    def get(self, name: str) -> Callable:
        self._load()
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}")
        return self._items[name]

    def config(self, name: str) -> type | None:
        """The typed config class of option `name` (None for an entry registered without one)."""
        self.get(name)
        return self._configs.get(name)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items


MODELS = Registry("model", "contnet.models")
OPTIMIZERS = Registry("optimizer", "contnet.optim")
SCHEDULERS = Registry("scheduler", "contnet.optim")
TASKS = Registry("task", "contnet.tasks")
# task name -> fn(task config) that checks the task's input files without loading them (raises ConfigError);
# `contnet train` calls it before Hydra writes anything
TASK_CHECKS = Registry("task check", "contnet.tasks", group="task")
PEFTS = Registry("peft", "contnet.peft")
LOGGERS = Registry("logger", "contnet.engine")      # name -> fn(cfg, run_dir, full_config, group, name) -> logger

# every registry whose options are a conf/ group (contnet.conf stores their schemas; the trainer group has one
# option, contnet.engine.config.TrainerConfig, typed directly)
ALL = (MODELS, OPTIMIZERS, SCHEDULERS, TASKS, PEFTS, LOGGERS)
