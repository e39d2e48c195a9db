"""contnet's Hydra config tree (conf/<group>/<name>.yaml).  Importing it (Hydra does, for pkg://contnet.conf)
puts every registered option's typed config (contnet/schema.py) into Hydra's ConfigStore at
schema/<group>/<name>, the schema each YAML names first in its defaults list.

Hydra deep-copies its config repository, ConfigStore included, each time it composes or lists a group
(`contnet train --help`: 183 times, 2.8 M deepcopy calls with every schema stored).  The store's tree is shared by
those copies instead: Hydra never changes a stored node (ConfigStore.load hands out a deep copy of the node it
loads), so a copy of the tree is never needed."""
from __future__ import annotations

from typing import Sequence

from hydra.core.config_store import ConfigStore

from contnet.engine.config import TrainerConfig
from contnet.registry import ALL


class SharedTree(dict):
    """ConfigStore's tree of stored nodes, shared (not copied) by `copy.deepcopy`."""

    def __deepcopy__(self, memo):
        return self


def store_schemas() -> None:
    """Every registered option's class at `schema/<group>/<name>` (and TrainerConfig, the trainer group's one
    option, at schema/trainer/default), in a store whose tree copies share.  Each is stored as its default
    instance named by its key, `cls(name=<key>)`, so that `<group>.name` composes to the key although no class
    restates it (and a class registered under several keys composes to each of them)."""
    cs = ConfigStore.instance()
    if not isinstance(cs.repo, SharedTree):
        cs.repo = SharedTree(cs.repo)
    options = [(reg.group, name, reg.config(name)) for reg in ALL for name in reg.names()]
    for group, name, cls in options + [(TrainerConfig.group, TrainerConfig.option, TrainerConfig)]:
        if cls is not None:
            cs.store(group=f"schema/{group}", name=name, node=cls(name=name))


store_schemas()


def compose(overrides: Sequence[str] = (), hydra_config: bool = False):
    """The config `contnet train <overrides>` runs, composed by Hydra's compose API outside Hydra's main (with its
    `hydra` node when `hydra_config`): the one helper that the library's drivers, `contnet params`, bench/ and the
    tests compose with.  Hydra's global state is cleared before and after, so it may be called anywhere."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="contnet.conf", version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides), return_hydra_config=hydra_config)
    finally:
        GlobalHydra.instance().clear()
