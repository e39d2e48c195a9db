"""`contnet params model=gpt2-medium peft=lora`: trainable and total parameters from the configuration alone.

The model and the adapter are built by the same registry builders as in training (MODELS, PEFTS), under
`torch.device("meta")`: no weights are allocated, and language models (whose typed config says
`needs_task = False`) return their architecture from the shipped configuration (no download, no tokenizer),
so the counts are the ones a run reports.  Other models take their shapes from the task, which is built.
Comma lists compare several choices: `contnet params model=gpt2-medium peft=full,lora,solo`.
"""
from __future__ import annotations

import itertools
import sys

from contnet.cli.checks import check_overrides, full_errors, one_line
from contnet.registry import ConfigError

USAGE = ("usage: contnet params [model=NAME] [peft=NAME[,NAME...]] [peft.rank=..] [other overrides]\n"
         "  prints trainable and total parameters, e.g. contnet params model=gpt2-medium peft=lora,solo")


def count(cfg) -> tuple[int, int]:
    """(trainable, total) parameters of the composed run config `cfg`, built on the meta device."""
    import torch

    from contnet.engine.run import resolve_auto
    from contnet.models.common import count_parameters
    from contnet.registry import MODELS, PEFTS, TASKS
    resolve_auto(cfg)
    name = str(cfg.model.name)
    task = TASKS.get(cfg.task.name)(cfg.task, int(cfg.seed)) if MODELS.config(name).needs_task else None
    with torch.device("meta"):
        model = MODELS.get(name)(cfg.model, task)
        model = PEFTS.get(str(cfg.peft.name))(cfg.peft, model, task)
    return count_parameters(model)


def expand(argv: list[str]) -> list[list[str]]:
    """`peft=lora,solo model=a,b` -> one override list per combination (only model/peft may list)."""
    fixed, lists = [], []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in ("model", "peft") and "," in value:
            lists.append([f"{key}={v}" for v in value.split(",")])
        else:
            fixed.append(arg)
    return [fixed + list(combo) for combo in itertools.product(*lists)] if lists else [fixed]


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0
    bad = [a for a in argv if "=" not in a]
    if bad:
        print(f"contnet params: expected key=value overrides, got {bad[0]!r}\n{USAGE}", file=sys.stderr)
        return 2
    if not any(a.startswith("model=") for a in argv):
        argv = ["model=gpt2-medium", *argv]
    # no task default of our own: a language model never builds its task (needs_task is False), the others
    # take their shapes from the composed task (digits unless task= says otherwise)
    from contnet.conf import compose
    rows = []
    try:
        for overrides in expand(argv):
            check_overrides(overrides, output_dir=False, task_files=False)   # the checks of `contnet train`
            cfg = compose(overrides)
            trainable, total = count(cfg)
            rows.append((str(cfg.model.name), str(cfg.peft.get("name", "none")), trainable, total))
    except ConfigError as e:
        if full_errors():
            raise
        print(f"contnet params: error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:                   # Hydra composition errors (unknown option/key): one line
        if type(e).__module__.startswith(("hydra", "omegaconf")):
            print(f"contnet params: {str(e).splitlines()[0]}", file=sys.stderr)
            return 2
        raise
    print(f"{'model':<14} {'peft':<6} {'trainable':>14} {'total':>14} {'trainable %':>12}")
    for model, peft, trainable, total in rows:
        print(f"{model:<14} {peft:<6} {trainable:>14,} {total:>14,} {100 * trainable / max(total, 1):>11.4f}%")
    return 0
