"""Group runs that differ only by seed, and name groups by what tells them apart.

Two runs belong together when their composed configs are equal after dropping the
seed and the keys that describe *where or how a run was recorded* rather than *what
was trained* (Hydra's own node, loggers, resume, data and output paths).
Labels list only the keys whose values differ between groups, in override syntax
(`optimizer=adam optimizer.lr=0.01`), so they stay short.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Iterable, Sequence

from contnet.report.runs import Run

# fnmatch patterns over dotted config keys; `--ignore` on the CLI adds more.
DEFAULT_IGNORED_KEYS = (
    "seed",
    "hydra", "hydra.*",
    "logger", "logger.*",
    "trainer.resume", "trainer.resume.*",
    # switches that change no number: runs that differ only in them are one group
    "trainer.plot", "trainer.progress", "trainer.print_every", "trainer.overwrite", "trainer.checkpoint_every*",
    "*data_dir", "*output_dir", "*cache_dir",
)

_MISSING = "<unset>"


@dataclass
class Group:
    key: tuple[tuple[str, Any], ...]  # the sorted (key, value) pairs runs share
    runs: list[Run] = field(default_factory=list)
    label: str = ""
    label_parts: list[tuple[str, str]] = field(default_factory=list)  # [("optimizer", "adam"), ...]

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.key)

    def count(self, status: str) -> int:
        return sum(1 for r in self.runs if r.status == status)


def is_ignored(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(key, p) for p in patterns)


def group_key(run: Run, ignore: Sequence[str] = DEFAULT_IGNORED_KEYS) -> tuple:
    items = [(k, v) for k, v in run.config.items() if not is_ignored(k, ignore)]
    return tuple(sorted(items, key=lambda kv: kv[0]))


def group_runs(runs: Iterable[Run], ignore: Sequence[str] = DEFAULT_IGNORED_KEYS) -> list[Group]:
    """Groups in order of first appearance (runs arrive sorted by path)."""
    groups: dict[tuple, Group] = {}
    for run in runs:
        key = group_key(run, ignore)
        groups.setdefault(key, Group(key=key)).runs.append(run)
    result = list(groups.values())
    configs = [g.config for g in result]
    for group, parts, label in zip(result, label_parts(configs), make_labels(configs)):
        group.label_parts = parts
        group.label = label
    return result


def _format(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(_format(v) for v in value) + "]"
    if value is None:
        return "null"
    return str(value)


def make_labels(configs: Sequence[dict[str, Any]]) -> list[str]:
    """Short, distinct labels: `optimizer=adam optimizer.lr=0.01`."""
    labels = [" ".join(f"{k}={v}" for k, v in parts) for parts in label_parts(configs)]
    if len(labels) > 1:
        labels = [label or "defaults" for label in labels]
    return _dedupe([label or "all runs" for label in labels])


def label_parts(configs: Sequence[dict[str, Any]]) -> list[list[tuple[str, str]]]:
    """(name, value) pairs from the keys that vary between configs.

    A config group (`optimizer`, `model`, ...) carries `name`; when `optimizer.name`
    differs, the other `optimizer.*` keys usually differ only because the choice
    changed, so they are shown only where they also vary between configs that share
    the same name (e.g. an lr sweep within adam).
    """
    if not configs:
        return []
    if len(configs) == 1:
        cfg = configs[0]
        return [[(k[:-5], _format(cfg[k])) for k in ("task.name", "model.name", "optimizer.name")
                 if k in cfg]]

    keys = sorted(set().union(*configs))
    varying = [k for k in keys if len({_format(c.get(k, _MISSING)) for c in configs}) > 1]
    varying_names = {k[:-5] for k in varying if k.endswith(".name")}

    def shown(key: str) -> bool:
        if key.endswith(".name"):
            return True
        owner = next((p for p in varying_names if key.startswith(p + ".")), None)
        if owner is None:
            return True
        # keep the key only if it varies among configs that chose the same option
        by_choice: dict[str, set[str]] = {}
        for c in configs:
            by_choice.setdefault(_format(c.get(owner + ".name")), set()).add(
                _format(c.get(key, _MISSING)))
        return any(len(values) > 1 for values in by_choice.values())

    # `.name` keys first so labels read `optimizer=adam optimizer.lr=0.1`
    order = sorted((k for k in varying if shown(k)), key=lambda k: (not k.endswith(".name"), k))
    result = []
    for cfg in configs:
        parts = []
        for key in order:
            if key in cfg:
                parts.append((key[:-5] if key.endswith(".name") else key, _format(cfg[key])))
        result.append(parts)
    return result


def _dedupe(labels: list[str]) -> list[str]:
    # Distinct configs can print alike (e.g. 1 vs 1.0); keep labels unique anyway.
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return out
