"""Config validation before any work: one line `<key>=<value>: <what is allowed>` per problem.

Data-driven, so that a new option of any group is covered without code:
- **names**: `<group>.name` must be a registry key (models, optimizers, tasks, ...).
- **unknown keys**: a key of the composed group that its option's YAML (`conf/<group>/<name>.yaml`)
  does not have (Hydra lets `+optimizer.foo=1` through; a typo would otherwise be silently ignored).
- **types**: an override must have the type of the YAML default (bool, int, float — an int is a
  fine float —, str, list, dict; a null default or a default of `auto` accepts anything).  null is
  rejected where the default is a number (NULL_MEANS_UNSET lists the exceptions).
- **ranges and enums**: the RULES table, matched on the dotted key (full path first, then by
  leaf-name patterns such as `*.lr`, `*batch_size`, `*_frac`), so other groups' keys named like
  these get the same checks.
"""
from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

from contnet.registry import ALL, MODELS, OPTIMIZERS, PEFTS, SCHEDULERS, TASKS, ConfigError
from contnet.schema import typed

GROUPS = ("task", "model", "optimizer", "scheduler", "peft", "trainer", "logger")
REQUIRED_GROUPS = ("task", "model", "optimizer", "trainer")
LOGGER_NAMES = ("jsonl", "tensorboard", "wandb")


def _registry_names(group: str) -> list[str] | None:
    regs = {"task": TASKS, "model": MODELS, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS, "peft": PEFTS}
    if group == "logger":
        return list(LOGGER_NAMES)
    return regs[group].names() if group in regs else None


def _config_class(group: str, name: str):
    reg = next((r for r in ALL if r.group == group), None)
    return reg.config(name) if reg is not None and name in reg else None


# ---------------------------------------------------------------------------------------------
# Rules: a predicate on the (resolved) value and the words for what is allowed.

@dataclass(frozen=True)
class Rule:
    ok: Callable[[Any], bool]
    allowed: str
    nullable: bool = True


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def num(lo=None, hi=None, *, lo_open=False, hi_open=False, integer=False, nullable=True) -> Rule:
    def ok(v):
        if not _is_num(v) or (integer and not isinstance(v, int)):
            return False
        if v != v:  # NaN
            return False
        if lo is not None and (v <= lo if lo_open else v < lo):
            return False
        return not (hi is not None and (v >= hi if hi_open else v > hi))
    kind = "an integer" if integer else "a number"
    if lo is not None and hi is not None:
        words = f"{kind} in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    elif lo is not None:
        words = f"{kind} {'>' if lo_open else '>='} {lo}"
    else:
        words = kind
    return Rule(ok, words + (" or null" if nullable else ""), nullable)


def choice(*values, nullable=False) -> Rule:
    return Rule(lambda v: v in values, "one of " + ", ".join(map(str, values)) + (" or null" if nullable else ""),
                nullable)


def regex(pattern: str, words: str) -> Rule:
    return Rule(lambda v: isinstance(v, str) and re.fullmatch(pattern, v) is not None, words, nullable=False)


def _betas(v) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_num(b) and 0 <= b < 1 for b in v)


POSITIVE_INT = num(0, lo_open=True, integer=True)
REQUIRED_POSITIVE_INT = num(0, lo_open=True, integer=True, nullable=False)
NON_NEGATIVE_INT = num(0, integer=True, nullable=False)
UNIT = num(0, 1)                                  # λ-like: [0, 1]

# First match wins: full paths, then generic leaf-name patterns.
RULES: list[tuple[str, Rule]] = [
    ("seed", num(0, integer=True, nullable=False)),
    ("trainer.batch_size", REQUIRED_POSITIVE_INT),
    ("trainer.max_steps", POSITIVE_INT),
    ("trainer.max_epochs", POSITIVE_INT),
    ("trainer.eval_every", NON_NEGATIVE_INT),
    ("trainer.checkpoint_every", NON_NEGATIVE_INT),
    ("trainer.checkpoint_every_s", num(0)),
    ("trainer.print_every", REQUIRED_POSITIVE_INT),
    ("trainer.log_every", REQUIRED_POSITIVE_INT),
    ("trainer.bn_recalibrate", NON_NEGATIVE_INT),
    ("trainer.diverge_factor", num(1, lo_open=True, nullable=True)),
    ("trainer.threads", Rule(lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v > 0),
                             "auto, null or an integer > 0")),
    ("trainer.grad_clip", num(0, nullable=False)),
    ("trainer.device", regex(r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda or cuda:N")),
    ("trainer.precision", choice("fp32", "bf16", "fp16", "auto")),
    ("trainer.channels_last", choice(True, False, "auto")),
    ("trainer.tf32", choice(True, False, "auto")),
    ("trainer.find_unused_parameters", choice(True, False, "auto")),
    ("trainer.sync_bn", choice(True, False, "auto")),
    ("trainer.flush_denormal", choice(True, False)),
    ("logger.mode", choice("online", "offline", "disabled", nullable=True)),
    ("logger.init_timeout", num(0, lo_open=True, nullable=False)),
    ("optimizer.alpha", num(0, 1)),               # RMSprop smoothing (peft.alpha is LoRA's scale)
    ("peft.alpha", num(0, lo_open=True)),
    ("*.lambda_lr", num(0)),                      # 0: λ moves by the constraint only
    ("*.lr", num(0, lo_open=True, nullable=False)),
    ("*.l_init", UNIT), ("*.lambda_init", UNIT), ("*.lambda_value", UNIT), ("*.lambda", UNIT),
    ("*.delta_l*", num(0, lo_open=True)), ("*.delta_s", num(0, lo_open=True)),
    ("*_arc_len", num(0, lo_open=True)),
    ("*batch_size", POSITIVE_INT),
    ("peft.r", POSITIVE_INT), ("*rank*", POSITIVE_INT),
    ("*_frac", num(0, 1, hi_open=True)),
    ("*.dropout", num(0, 1, hi_open=True)),
    ("*.density", num(0, 1, lo_open=True)),
    ("*.betas", Rule(_betas, "two numbers in [0, 1), e.g. [0.9,0.999]", nullable=False)),
    ("*.eps", num(0, lo_open=True)),
    ("*.weight_decay", num(0)),
    ("*.momentum", num(0)),
    ("*.min_lr_ratio", num(0, 1)),
    ("*.gamma", num(0, lo_open=True)),
    ("*.warmup_steps", num(0, integer=True)),
    ("*.step_size", POSITIVE_INT),
    ("*.depth", POSITIVE_INT), ("*.width", POSITIVE_INT), ("*.code_size", POSITIVE_INT),
    ("*.num_samples", POSITIVE_INT), ("*.n_bits", POSITIVE_INT), ("*.u_freq", POSITIVE_INT),
    ("*.num_beams", POSITIVE_INT), ("*.max_new_tokens", POSITIVE_INT),
]


# Keys with a numeric default where null is a documented setting; any other key whose YAML default is a
# number rejects null (the builder would crash on int(None)).
NULL_MEANS_UNSET = frozenset({"trainer.max_epochs",     # null: train for trainer.max_steps
                              "trainer.diverge_factor"})  # null: only NaN/Inf ends a run as diverged


def rule_for(key: str) -> Rule | None:
    for pattern, rule in RULES:
        if fnmatch.fnmatchcase(key, pattern):
            return rule
    return None


# ---------------------------------------------------------------------------------------------

def fmt(v: Any) -> str:
    """A value as it would be written on the command line."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{fmt(x)}" for k, x in v.items()) + "}"
    return str(v)


@functools.lru_cache(maxsize=None)
def option_defaults(group: str, name: str) -> DictConfig | None:
    """The raw (unresolved) YAML of `conf/<group>/<name>.yaml`, or None if there is none."""
    path = resources.files("contnet.conf") / group / f"{name}.yaml"
    if not path.is_file():
        return None
    return OmegaConf.create(path.read_text())


@functools.lru_cache(maxsize=None)
def preset_paths() -> frozenset[str]:
    """Dotted keys that experiment presets (`conf/experiment/**/*.yaml`, `# @package _global_`) set.  A preset
    may add keys, e.g. a top-level table read through interpolations, or the continuation keys it sets
    for every optimizer of a sweep (plain Adam ignores them); those are not typos."""
    paths: set[str] = set()

    def walk(prefix: str, node) -> None:
        for k, v in node.items():
            full = f"{prefix}{k}"
            paths.add(full)
            if isinstance(v, dict):
                walk(full + ".", v)
    def files(d):
        for f in d.iterdir():
            if f.is_dir():
                yield from files(f)
            elif f.name.endswith(".yaml"):
                yield f
    root = resources.files("contnet.conf") / "experiment"
    for f in files(root) if root.is_dir() else ():
        raw = OmegaConf.to_container(OmegaConf.create(f.read_text()), resolve=False) or {}
        raw.pop("defaults", None)
        walk("", raw)
    return frozenset(paths)


def _type_problem(default: Any, value: Any) -> str | None:
    if default is None or value is None or default == "auto":
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if isinstance(default, float):
        return None if _is_num(value) else "a number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "a string"
    if isinstance(default, list):
        return None if isinstance(value, list) else "a list, e.g. [a,b]"
    if isinstance(default, dict):
        return None if isinstance(value, dict) else "a mapping of keys"
    return None


def _check_node(prefix: str, raw: DictConfig | None, value: dict, where: str, problems: list[str]) -> None:
    """Compare a resolved group dict to its raw YAML defaults, recursively, and apply RULES."""
    for key, v in value.items():
        full = f"{prefix}.{key}"
        if raw is not None and key not in raw and full not in preset_paths():
            known = ", ".join(str(k) for k in raw.keys())
            problems.append(f"{full}={fmt(v)}: unknown key for {where}; its keys are: {known}")
            continue
        default = None
        if raw is not None and key in raw and not OmegaConf.is_interpolation(raw, key):
            node = raw[key]
            default = OmegaConf.to_container(node) if isinstance(node, (DictConfig, ListConfig)) else node
        rule = rule_for(full)
        no_null = _is_num(default) and full not in NULL_MEANS_UNSET
        allowed = rule.allowed.removesuffix(" or null") if rule is not None and no_null else getattr(rule, "allowed", "")
        if v is None and no_null:
            problems.append(f"{full}=null: must be {allowed or 'a number'} (default {fmt(default)}); null is not a number")
            continue
        if rule is not None and not (v is None and rule.nullable) and not (v is not None and rule.ok(v)):
            problems.append(f"{full}={fmt(v)}: must be {allowed}")
            continue
        problem = _type_problem(default, v)
        if problem:
            problems.append(f"{full}={fmt(v)}: must be {problem} (default {fmt(default)})")
            continue
        if isinstance(v, dict):
            sub = raw[key] if raw is not None and isinstance(raw.get(key), DictConfig) else None
            _check_node(full, sub, v, where, problems)


def _resolved(cfg: DictConfig, group: str) -> dict:
    try:
        return OmegaConf.to_container(cfg[group], resolve=True)
    except Exception as e:  # an interpolation that cannot be resolved (a missing env var, a typo)
        raise ConfigError(f"{group}: cannot resolve the config ({' '.join(str(e).split())})") from None


def problems(cfg: DictConfig) -> list[str]:
    """Every problem found, one line each (empty: the config is valid)."""
    out: list[str] = []
    known_top = {"seed", *GROUPS}
    for key in cfg.keys():
        if key not in known_top and key not in preset_paths():
            out.append(f"{key}={fmt(OmegaConf.to_container(cfg, resolve=False).get(key))}: unknown top-level key; "
                       f"the keys are: {', '.join(sorted(known_top))}")
    seed = cfg.get("seed")
    rule = rule_for("seed")
    if not rule.ok(seed):
        out.append(f"seed={fmt(seed)}: must be {rule.allowed}")
    for group in GROUPS:
        if cfg.get(group) is None:
            if group in REQUIRED_GROUPS:
                out.append(f"{group}=null: a {group} is required; choose one of: {', '.join(_registry_names(group) or [])}")
            continue
        value = _resolved(cfg, group)
        name = value.get("name")
        names = _registry_names(group)
        if names is not None and name not in names:
            out.append(f"{group}.name={fmt(name)}: unknown {group}; choose one of: {', '.join(names)}")
            continue
        cls = _config_class(group, str(name))
        if cls is not None:                        # a typed option: its schema holds keys, types and rules
            try:
                typed(cls, value)
            except ConfigError as e:
                out.append(str(e))
            continue
        raw = option_defaults(group, str(name))
        _check_node(group, raw, value, f"{group}={name}", out)
    tr = cfg.get("trainer")
    if tr is not None and not tr.get("max_steps") and not tr.get("max_epochs"):
        out.append(f"trainer.max_steps={fmt(tr.get('max_steps'))}: set trainer.max_steps or trainer.max_epochs "
                   "to a positive integer")
    if tr is not None and tr.get("resume") not in (None, "", "auto"):
        ckpt = Path(str(tr.resume)).expanduser() / "checkpoints" / "last.pt"
        if not ckpt.is_file():
            out.append(f"trainer.resume={tr.resume}: no checkpoint at {ckpt}; give a run directory that has "
                       "checkpoints/last.pt, or auto, or null")
    return out


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError with the first problem (and how many more there are)."""
    found = problems(cfg)
    if found:
        more = f" (and {len(found) - 1} more problem{'s' if len(found) > 2 else ''})" if len(found) > 1 else ""
        raise ConfigError(found[0] + more)
