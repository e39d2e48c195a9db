"""Search spaces: the `tune:` table's sweep expressions (the ones Hydra's Optuna sweeper read) as Optuna
distributions, so that the presets keep their meaning on current Optuna.

    tag(log, interval(1e-4, 1e-1))   FloatDistribution(1e-4, 1e-1, log=True)
    interval(0.1, 0.5)               FloatDistribution(0.1, 0.5)    (Hydra reads interval's ends as floats)
    range(16, 129, 16)               IntDistribution(16, 128, step=16)  (the end excluded, as in Python)
    choice(relu, tanh)               CategoricalDistribution(["relu", "tanh"])

Hydra's own override grammar reads the text (the same parser that reads `contnet train` command lines), and
anything else — a plain value, a typo — is one ConfigError line naming the key and the forms above.
"""
from __future__ import annotations

import math

FORMS = "tag(log, interval(a, b)), interval(a, b), range(a, b[, step]) or choice(x, y, ...)"


def _error(key: str, expr, why: str):
    from contnet.registry import ConfigError
    return ConfigError(f"tune search space {key}: {expr!r} {why}; write {FORMS}")


def parse_one(key: str, expr):
    """One `key: expression` of a search space as an Optuna distribution (ConfigError: one line)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    if not isinstance(expr, str):
        raise _error(key, expr, "is not a search expression")
    try:
        override = OverridesParser.create().parse_override(f"{key}={expr}")
    except HydraException as e:
        raise _error(key, expr, f"does not parse ({' '.join(str(e).split())[:120]})") from None
    if not override.is_sweep_override():
        raise _error(key, expr, "is a single value, not a range to search")
    return to_distribution(key, expr, override.value())


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def to_distribution(key: str, expr: str, sweep):
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    log = "log" in (sweep.tags or set())
    if isinstance(sweep, ChoiceSweep):
        if log or not sweep.list or any(isinstance(c, (list, dict)) for c in sweep.list):
            raise _error(key, expr, "needs plain values (numbers, words), no log tag")
        return CategoricalDistribution(list(sweep.list))
    if isinstance(sweep, IntervalSweep):
        lo, hi = sweep.start, sweep.end
        if not (_number(lo) and _number(hi) and lo < hi) or (log and lo <= 0):
            raise _error(key, expr, "needs finite ends a < b (and a > 0 with log)")
        return FloatDistribution(float(lo), float(hi), log=log)
    if isinstance(sweep, RangeSweep):
        return _range(key, expr, sweep, log)
    raise _error(key, expr, "is not a search expression")


def _range(key: str, expr: str, sweep, log: bool):
    from optuna.distributions import FloatDistribution, IntDistribution
    start, stop, step = sweep.start, sweep.stop, sweep.step if sweep.step is not None else 1
    if not (_number(start) and _number(stop) and _number(step) and step > 0 and start < stop) or log:
        raise _error(key, expr, "needs start < stop and a positive step (no log tag)")
    n = math.ceil((stop - start) / step)          # Python's range: `stop` is never a value
    last = start + (n - 1) * step
    if all(isinstance(x, int) for x in (start, stop, step)):
        return IntDistribution(start, last, step=step)
    return FloatDistribution(float(start), float(last), step=float(step)) if n > 1 else \
        FloatDistribution(float(start), float(start))


def parse(space: dict) -> dict:
    """A whole search space {key: expression} as {key: distribution}; the first bad one is a ConfigError."""
    return {key: parse_one(key, expr) for key, expr in (space or {}).items()}


def override(key: str, value) -> str:
    """A sampled value as a `key=value` override that Hydra reads back as the same value."""
    if isinstance(value, float):
        return f"{key}={value!r}"
    if isinstance(value, str):
        return f"{key}={value}" if value and value.replace("_", "").replace("-", "").isalnum() else f"{key}='{value}'"
    if value is None:
        return f"{key}=null"
    return f"{key}={str(value).lower() if isinstance(value, bool) else value}"
