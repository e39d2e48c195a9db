"""The one exception type of bad user input (its own module: everything may import it, it imports nothing)."""
from __future__ import annotations


class ConfigError(ValueError):
    """A user-facing configuration problem; its message is one line naming the key and the fix."""


def fmt(v) -> str:
    """A value as it would be written on the command line."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))                 # -1, as typed, not OmegaConf's -1.0
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{fmt(x)}" for k, x in v.items()) + "}"
    return str(v)
