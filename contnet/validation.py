"""What no option's schema can say, checked on the composed config before any work.

Each group's keys, types, ranges and its own cross-field rules live in its typed config
(contnet/schema.py; e.g. contnet/optim/standard.py AdamConfig) and are checked by `typed()`.  Left here:
- the choices themselves: a required group is present and `<group>.name` is a registered option;
- the top-level `seed` (the root config has no schema: presets add top-level tables such as `tune:`);
- a `trainer.resume=<run dir>` that must exist on disk.
One line `<key>=<value>: <what is allowed>` per problem.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from contnet.errors import ConfigError, fmt
from contnet.registry import ALL
from contnet.schema import typed

REQUIRED_GROUPS = ("task", "model", "optimizer", "trainer")
REGISTRIES = {reg.group: reg for reg in ALL}


def problems(cfg: DictConfig) -> list[str]:
    """Every problem found, one line each (empty: the config is valid)."""
    out: list[str] = []
    seed = cfg.get("seed")
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        out.append(f"seed={fmt(seed)}: must be an integer >= 0")
    for group, reg in REGISTRIES.items():
        node = cfg.get(group)
        if node is None:
            if group in REQUIRED_GROUPS:
                out.append(f"{group}=null: a {group} is required; choose one of: {', '.join(reg.names())}")
            continue
        name = node.get("name")
        if name not in reg.names():
            out.append(f"{group}.name={fmt(name)}: unknown {group}; choose one of: {', '.join(reg.names())}")
            continue
        try:
            typed(reg.config(name), node)
        except ConfigError as e:
            out.append(str(e))
    resume = cfg.trainer.get("resume") if cfg.get("trainer") is not None else None
    if isinstance(resume, str) and resume not in ("", "auto"):    # true/false/null: TrainerConfig's rules
        ckpt = Path(str(resume)).expanduser() / "checkpoints" / "last.pt"
        if not ckpt.is_file():
            out.append(f"trainer.resume={resume}: no checkpoint at {ckpt}; give a run directory that has "
                       "checkpoints/last.pt, or auto, or false/null")
    return out


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError with the first problem (and how many more there are)."""
    found = problems(cfg)
    if found:
        more = f" (and {len(found) - 1} more problem{'s' if len(found) > 2 else ''})" if len(found) > 1 else ""
        raise ConfigError(found[0] + more)
