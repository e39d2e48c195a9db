"""Composing configs in tests: the product's one helper (contnet.conf.compose) and a cached read-only variant."""
from __future__ import annotations

import functools

from contnet.conf import compose

__all__ = ["compose", "compose_option"]


@functools.lru_cache(maxsize=None)
def compose_option(group: str, option: str):
    """The default config with `group=option`, composed once per session for the tests that compose every option
    and only read it: do not modify the returned config."""
    return compose([f"{group}={option}"])
