"""Composing configs in tests: the product's one helper (contnet.conf.compose), memoised."""
from __future__ import annotations

import copy
import functools

from contnet.conf import compose as compose_fresh

__all__ = ["compose", "compose_fresh", "compose_option"]

_COMPOSED: dict = {}


def compose(overrides=(), hydra_config: bool = False):
    """contnet.conf.compose(overrides, hydra_config), composed once per session for each list of overrides and
    handed out as a deep copy (the caller may change it).  A composition depends on the overrides and conf/ alone:
    interpolations (environment variables, Hydra's resolvers) stay unresolved in the copy until they are read.
    compose_fresh composes every time (for a test about composition itself)."""
    key = (tuple(overrides), hydra_config)
    if key not in _COMPOSED:
        _COMPOSED[key] = compose_fresh(list(overrides), hydra_config=hydra_config)
    return copy.deepcopy(_COMPOSED[key])


@functools.lru_cache(maxsize=None)
def compose_option(group: str, option: str):
    """The default config with `group=option`, composed once per session for the tests that compose every option
    and only read it: do not modify the returned config."""
    return compose_fresh([f"{group}={option}"])
