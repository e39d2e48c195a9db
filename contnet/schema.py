"""Typed configs: one dataclass per registered option is the single source of its defaults.

Each registry entry (`@OPTIMIZERS.register("cadam", config=CAdamConfig)`) names an `Options` dataclass.
That class is
  - the Hydra ConfigStore schema of its YAML: importing contnet.conf puts it at `schema/<group>/<name>`
    (`contnet.conf.store_schemas`) and `conf/<group>/<name>.yaml` starts with
    `defaults: [/schema/<group>/<name>@_here_, _self_]`, so OmegaConf rejects an unknown key or a value of
    the wrong type while composing;
  - what its builder receives: `Registry.register` wraps the builder so that its first argument (a
    DictConfig, a dict, or the dataclass itself) is turned into a checked instance by `typed()`;
  - the library's default: `CAdamConfig()` equals `contnet train optimizer=cadam`'s `optimizer` node
    (tests/test_schema.py checks every option).
Ranges and choices are declared next to the field (`opt(1e-3, gt=0)`, `opt("frozen", choices=...)`) and
checked by `Options.check()`; a rule that spans fields goes in the subclass's `check()` (call super()).
"""
from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import MISSING, dataclass
from typing import Any, ClassVar

from contnet.errors import ConfigError, fmt


def opt(default: Any = MISSING, *, ge=None, gt=None, le=None, lt=None, choices=None, integer: bool = False,
        doc: str = "") -> Any:
    """A dataclass field with its rule: numeric bounds (ge/gt/le/lt), `choices`, and a one-line doc."""
    meta = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, choices=choices, doc=doc,
                                  integer=integer or None).items() if v not in (None, "")}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def rule_words(meta: dict) -> str | None:
    """What a field's rule allows, in words (None: no rule)."""
    if "choices" in meta:
        return "one of " + ", ".join(fmt(c) for c in meta["choices"])
    lo = ("[", meta["ge"]) if "ge" in meta else ("(", meta["gt"]) if "gt" in meta else None
    hi = ("]", meta["le"]) if "le" in meta else (")", meta["lt"]) if "lt" in meta else None
    kind = "an integer" if meta.get("integer") else "a number"     # opt(..., integer=True)
    if lo and hi:
        return f"{kind} in {lo[0]}{lo[1]}, {hi[1]}{hi[0]}"
    if lo:
        return f"{kind} {'>=' if lo[0] == '[' else '>'} {lo[1]}"
    if hi:
        return f"{kind} {'<=' if hi[0] == ']' else '<'} {hi[1]}"
    return None


def rule_ok(meta: dict, v) -> bool:
    if "choices" in meta:
        return v in meta["choices"]
    if not any(k in meta for k in ("ge", "gt", "le", "lt")):
        return True
    if not _num(v) or v != v:
        return False
    return not (("ge" in meta and v < meta["ge"]) or ("gt" in meta and v <= meta["gt"])
                or ("le" in meta and v > meta["le"]) or ("lt" in meta and v >= meta["lt"]))


@dataclass
class Block:
    """A block of typed fields with their rules: the base of every option's typed config (`Options`) and of a
    nested block of one (`model.resnet`, `task.generation`), which has no name of its own.  `group` and `option`
    are set by `Registry.register` (a nested block sets its `group`, e.g. "model.resnet")."""
    group: ClassVar[str] = ""
    option: ClassVar[str] = ""

    def check(self) -> None:
        """Field rules (from `opt(...)`); subclasses add cross-field rules and call super().check()."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None or not f.metadata:
                continue
            if not rule_ok(f.metadata, v):
                raise self.error(f.name, f"must be {rule_words(f.metadata)}")

    def error(self, key: str, why: str) -> ConfigError:
        """`<group>.<key>=<value>: <why>` as a ConfigError (one line)."""
        value = getattr(self, key.split(".")[0], None) if "." not in key else None
        return ConfigError(f"{type(self).group}.{key}={fmt(value)}: {why}")   # type(): logger.group is a field

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Options(Block):
    """Base of every option's typed config.  `name` (the composed `<group>.name`) is its registry key: an option
    class never restates it (`AdamConfig().name` is "adam" because `@OPTIMIZERS.register("adam",
    config=AdamConfig)` made "adam" its option; tests/test_schema.py keeps `name: str = "..."` lines out of
    contnet/)."""
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:                   # the class's registry key (a class under several keys: its first)
            self.name = type(self).option


OBJECTIVE_WORDS = {"classify": "classification", "reconstruct": "reconstruction", "generate": "text generation"}


@dataclass(frozen=True)
class TaskFacts:
    """What the checks before a run know of a task from its typed config alone (no data read): its name, its
    objective (classify | reconstruct | generate, as the built task's `meta.objective` will say) and whether its
    inputs are (C, H, W) images (the torchvision tasks, 28-32 px, unless task.flatten=true).  Models check
    themselves against it (`ModelConfig.check_task`), so a model that cannot serve the task is refused by
    contnet.validation before any job of a sweep runs, not by the builder of one job."""
    name: str
    objective: str
    images: bool = False

    @property
    def words(self) -> str:
        return f"task={self.name} ({OBJECTIVE_WORDS.get(self.objective, self.objective)})"


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def typed(cls: type[Block], node, option: str = "") -> Block:
    """`node` (a DictConfig, a mapping, None or an instance) as a checked `cls` instance: missing keys take
    the class defaults; an unknown key, a wrong type or a value outside its rule is a ConfigError.  `option`:
    the registry key the node was chosen by, its `name` when it has none (a class registered under several keys
    would otherwise take its first)."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    if isinstance(node, cls):
        node.check()
        return node
    if isinstance(node, Block):
        node = dataclasses.asdict(node)
    if node is None:
        node = {}
    elif isinstance(node, DictConfig):
        try:
            node = OmegaConf.to_container(node, resolve=True)
        except OmegaConfBaseException as e:
            raise ConfigError(f"{cls.group}: cannot resolve the config ({' '.join(str(e).split())})") from None
    if option and "name" not in node:
        node = {**node, "name": option}
    key = _memo_key(cls, node)
    if key in _TYPED:                        # a study's runs share most blocks: typed once per process
        return copy.deepcopy(_TYPED[key])
    out = _typed(cls, node)
    if key is not None:
        if len(_TYPED) >= 256:
            _TYPED.pop(next(iter(_TYPED)))
        _TYPED[key] = copy.deepcopy(out)
    return out


_TYPED: dict = {}        # (class, the node as JSON) -> its checked instance (OmegaConf's typing: ~5 ms a block)


def _memo_key(cls, node: dict):
    import json
    try:
        return cls, json.dumps(node, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError):
        return None


def _typed(cls: type[Block], node: dict) -> Block:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    where = f"{cls.group}={cls.option}" if cls.option else cls.group
    names = field_names(cls)
    for key in node:
        if key not in names:
            raise ConfigError(f"{cls.group}.{key}={fmt(node[key])}: unknown key for {where}; "
                              f"its keys are: {', '.join(names)}")
    hints = typing.get_type_hints(cls)
    for key, value in node.items():          # a nested Block node (e.g. task.generation): its own keys and types
        if isinstance(hints.get(key), type) and issubclass(hints[key], Block) and isinstance(value, dict):
            typed(hints[key], value)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), node)
        out = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = getattr(e, "key", None)
        if key not in names:                 # an element of a list field: OmegaConf's key is its index
            key = next((k for k, v in node.items() if not _fits(hints.get(k, Any), v)
                        or _bad_element(hints.get(k, Any), v) is not None), key)
        raise ConfigError(type_message(cls, str(key), node.get(key))) from None
    out.check()
    return out


_WORDS = {bool: ("true or false", "true/false values"), int: ("an integer", "integers"),
          float: ("a number", "numbers"), str: ("a string", "strings"), dict: ("a mapping of keys", "mappings")}


def _strip_optional(t) -> tuple[Any, bool]:
    """(the type inside Optional[...], whether it is nullable)."""
    args = [a for a in typing.get_args(t) if a is not type(None)]
    nullable = type(None) in typing.get_args(t)
    return (args[0] if nullable and len(args) == 1 else t), nullable


def _words(t, plural: bool = False) -> str:
    """A type in words: `List[int]` → 'a list of integers', `List[List[int]]` → 'a list of lists of integers'."""
    base, _ = _strip_optional(t)
    origin = typing.get_origin(base) or base
    if origin in (list, tuple):
        inner = [a for a in typing.get_args(base) if a is not Ellipsis]
        elem = _words(inner[0], plural=True) if inner and inner[0] is not Any else None
        return ("lists" if plural else "a list") + (f" of {elem}" if elem else ", e.g. [a,b]")
    return _WORDS.get(origin, ("a value", "values"))[plural]


def type_words(cls, key: str) -> str:
    """The type of field `key` of `cls`, in words."""
    t, nullable = _strip_optional(typing.get_type_hints(cls).get(key, Any))
    return _words(t) + (" or null" if nullable else "")


def _fits(t, v) -> bool:
    """Whether OmegaConf can take `v` as a value of type `t` (scalars as they come from the command line)."""
    base, nullable = _strip_optional(t)
    origin = typing.get_origin(base) or base
    if v is None:
        return nullable or base is Any
    if origin in (list, tuple):
        return isinstance(v, (list, tuple))
    if origin in (int, float):
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            return False
        try:
            origin(v) if isinstance(v, str) else None           # "3" from a YAML string converts
        except ValueError:
            return False
        return isinstance(v, str) or isinstance(v, int) or origin is float
    if origin is bool:
        return isinstance(v, bool) or str(v).lower() in ("true", "false", "yes", "no", "on", "off", "1", "0")
    if origin is str:
        return not isinstance(v, (list, tuple, dict))
    return True


def _bad_element(t, value):
    """The first element of list `value` (searched depth first) that its declared type cannot take, with
    that type: (element, type), or None."""
    base, _ = _strip_optional(t)
    args = typing.get_args(base)
    if not (isinstance(value, (list, tuple)) and args and args[0] is not Any):
        return None
    for v in value:
        if not _fits(args[0], v):
            return v, args[0]
        inner = _bad_element(args[0], v)
        if inner is not None:
            return inner
    return None


def type_message(cls, key: str, value, text: str | None = None) -> str:
    """`<group>.<key>=<value>: must be <what the field allows> (default <d>)`: the rule's words where the
    field has a numeric rule (they include the type), else the type's.  For a list, the first element its
    type cannot take is named: `model.widths=[1,a]: must be a list of integers or null (default null); a is
    not an integer`.  `text`: the value as the user wrote it (printed instead of `value`)."""
    bad = _bad_element(typing.get_type_hints(cls).get(key, Any), value)
    tail = f"; {fmt(bad[0])} is not {_words(bad[1])}" if bad else ""
    field = next((f for f in dataclasses.fields(cls) if f.name == key), None)
    dv, words = None, type_words(cls, key)
    if field is not None:
        dv = field.default if field.default is not MISSING else field.default_factory()
        rule = rule_words(field.metadata)
        if rule is not None and any(k in field.metadata for k in ("ge", "gt", "le", "lt")):
            nullable = words.endswith(" or null")
            words = rule.replace("a number", "an integer", 1) if words.startswith("an integer") else rule
            words += " or null" if nullable else ""
    null = value is None or value == "null"
    tail += "; null is not a number" if null and _num(dv) else ""
    return f"{cls.group}.{key}={fmt(value) if text is None else text}: must be {words} (default {fmt(dv)}){tail}"
