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

from contnet.registry import ALL


class SharedTree(dict):
    """ConfigStore's tree of stored nodes, shared (not copied) by `copy.deepcopy`."""

    def __deepcopy__(self, memo):
        return self


def store_schemas() -> None:
    """Every registered option's class at `schema/<group>/<name>`, in a store whose tree copies share."""
    cs = ConfigStore.instance()
    if not isinstance(cs.repo, SharedTree):
        cs.repo = SharedTree(cs.repo)
    for reg in ALL:
        for name in reg.names():
            cls = reg.config(name)
            if cls is not None:
                cs.store(group=f"schema/{reg.group}", name=name, node=cls)


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
