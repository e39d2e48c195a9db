"""Name -> factory registries (timm style): the CLI name of a choice is its registry key.

Modules under contnet.{models,optim,tasks,peft} register themselves on import; `Registry.get`
imports every submodule of its package once, so a new file with `@MODELS.register("x")` is found
without editing a central list.  Keep heavy imports (transformers, torchvision) inside functions.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable


class ConfigError(ValueError):
    """A user-facing configuration problem; its message is one line naming the key and the fix."""


class Registry:
    def __init__(self, kind: str, package: str):
        self.kind, self.package = kind, package
        self._items: dict[str, Callable] = {}
        self._loaded = False

    def register(self, name: str):
        def deco(fn):
            if name in self._items and self._items[name] is not fn:
                raise KeyError(f"{self.kind} '{name}' registered twice")
            self._items[name] = fn
            return fn
        return deco

    def _load(self):
        if self._loaded:
            return
        self._loaded = True
        pkg = importlib.import_module(self.package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{self.package}.{mod.name}")

    def get(self, name: str) -> Callable:
        self._load()
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}")
        return self._items[name]

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
# task name -> fn(cfg.task) that checks the task's input files without loading them (raises ConfigError);
# `contnet train` calls it before Hydra writes anything
TASK_CHECKS = Registry("task check", "contnet.tasks")
PEFTS = Registry("peft", "contnet.peft")
