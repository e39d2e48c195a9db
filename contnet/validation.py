"""What no option's schema can say, checked on the composed config before any work.

Each group's keys, types, ranges and its own cross-field rules live in its typed config
(contnet/schema.py; e.g. contnet/optim/standard.py AdamConfig) and are checked by `typed()`.  Left here:
- the choices themselves: a required group is present and `<group>.name` is a registered option;
- the top-level `seed` (the root config has no schema: presets add top-level tables such as `tune:`), an
  integer in [0, 2**63 - 1] (what torch and the engine's seed arithmetic take);
- a `trainer.resume=<run dir>` that must exist on disk;
- the rules between groups (`cross_group`): a model that cannot serve the task, an adapter that needs a language
  model, the λ of a continuation optimizer that nothing reads (or that two drivers move), model.init=auto on a run
  that starts at λ=1.  Each is a rule the builders apply only once a job runs; here every job of a sweep is
  checked before the first one starts.  The rules that belong to one option live on its typed config
  (`ModelConfig.check_task`, `SoloConfig.check_model`, ...), this module only hands them the other groups.
One line `<key>=<value>: <what is allowed>` per problem.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from contnet.engine.config import TrainerConfig
from contnet.errors import ConfigError, fmt
from contnet.registry import ALL, OPTIMIZERS
from contnet.schema import Options, TaskFacts, typed

REQUIRED_GROUPS = ("task", "model", "optimizer", "trainer")
REGISTRIES = {reg.group: reg for reg in ALL}
SEED_MAX = 2 ** 63 - 1          # torch.manual_seed takes up to 2**64 - 1; the engine adds the epoch to the seed


def group_options(group: str) -> dict[str, type[Options]]:
    """The options of a config group: name -> its typed config class (the trainer group has one option,
    TrainerConfig, and no registry)."""
    if group == TrainerConfig.group:
        return {TrainerConfig.option: TrainerConfig}
    reg = REGISTRIES[group]
    return {name: reg.config(name) for name in reg.names()}


def problems(cfg: DictConfig) -> list[str]:
    """Every problem found, one line each (empty: the config is valid)."""
    return checked(cfg)[0]


def checked(cfg: DictConfig) -> tuple[list[str], dict[str, Options]]:
    """(every problem found, one line each; each group's typed config, typed once here)."""
    out: list[str] = []
    seed = cfg.get("seed")
    if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= SEED_MAX):
        out.append(f"seed={fmt(seed)}: must be an integer >= 0 and <= {SEED_MAX} (2**63 - 1)")
    opts: dict[str, Options] = {}
    for group in (*REGISTRIES, TrainerConfig.group):
        node, options = cfg.get(group), group_options(group)
        if node is None:
            if group in REQUIRED_GROUPS:
                out.append(f"{group}=null: a {group} is required; choose one of: {', '.join(options)}")
            continue
        name = node.get("name")
        if name not in options:
            out.append(f"{group}.name={fmt(name)}: unknown {group}; choose one of: {', '.join(options)}")
            continue
        try:
            opts[group] = typed(options[name], node)
        except ConfigError as e:
            out.append(str(e))
    if all(g in opts for g in ("task", "model", "optimizer")):
        out += cross_group(opts["task"], opts["model"], opts["optimizer"], opts.get("peft"))
    resume = cfg.trainer.get("resume") if cfg.get("trainer") is not None else None
    if isinstance(resume, str) and resume not in ("", "auto"):    # true/false/null: TrainerConfig's rules
        ckpt = Path(str(resume)).expanduser() / "checkpoints" / "last.pt"
        if not ckpt.is_file():
            out.append(f"trainer.resume={resume}: no checkpoint at {ckpt}; give a run directory that has "
                       "checkpoints/last.pt, or auto, or false/null")
    return out, opts


def validate(cfg: DictConfig) -> dict[str, Options]:
    """Each group's typed config (`{"task": …, "model": …, "trainer": TrainerConfig(…), …}`: the config typed
    once, at the door; the builders receive these instances); else ConfigError with the first problem (and how
    many more there are)."""
    found, typed_groups = checked(cfg)
    if found:
        more = f" (and {len(found) - 1} more problem{'s' if len(found) > 2 else ''})" if len(found) > 1 else ""
        raise ConfigError(found[0] + more)
    return typed_groups


def task_facts(task: Options) -> TaskFacts:
    """The task's objective and input kind from its typed config's class (the builder's `meta`, without data)."""
    from contnet.tasks.common import ReconstructOptions
    from contnet.tasks.images import ImageOptions
    from contnet.tasks.nlg_options import NLGOptions
    objective = ("generate" if isinstance(task, NLGOptions) else
                 "reconstruct" if isinstance(task, ReconstructOptions) else "classify")
    return TaskFacts(str(task.name), objective, isinstance(task, ImageOptions) and not task.flatten)


def _optimizers(continuation: bool) -> str:
    """The optimizer options that are (not) continuation methods, for the messages."""
    return ", ".join(n for n in OPTIMIZERS.names()
                     if bool(getattr(OPTIMIZERS.config(n), "homotopy", False)) == continuation)


def cross_group(task: Options, model: Options, optimizer: Options, peft: Options | None) -> list[str]:
    """The rules between the typed task, model, optimizer and peft configs, one line per problem."""
    out: list[str] = []
    continuation = bool(getattr(optimizer, "homotopy", False))      # a continuation optimizer moves the model's λ
    opt_name = f"optimizer={optimizer.name}"
    has_lambda = model.homotopy is True or (model.homotopy == "auto" and continuation)
    why_lambda = (f"{opt_name} (a continuation optimizer)" if continuation else "model.homotopy=true") \
        if has_lambda else None
    facts = task_facts(task)

    def rule(check, *args) -> None:
        try:
            check(*args)
        except ConfigError as e:
            out.append(str(e))

    rule(model.check_task, facts, why_lambda)
    if peft is not None and hasattr(peft, "check_model"):
        rule(peft.check_model, model)
    peft_name = "none" if peft is None else str(peft.name)
    solo = peft if peft_name == "solo" else None
    scheduled = solo is not None and solo.lambda_mode == "scheduled"
    if continuation and model.homotopy is False and not model.language_model:
        out.append(f"model.homotopy=false: {opt_name} moves λ through the model's homotopy points, which "
                   f"model.homotopy=false leaves out; use model.homotopy=auto, or a plain optimizer "
                   f"({_optimizers(False)})")
    if continuation and model.language_model:      # a language model has no homotopy points: only Solo reads λ
        if solo is None:
            out.append(f"{opt_name}: a continuation optimizer moves λ, and with model={model.name} (a language "
                       f"model: no homotopy points) and peft={peft_name} nothing reads it; use peft=solo (its long "
                       f"skips read λ), or a plain optimizer ({_optimizers(False)})")
        elif not scheduled:
            out.append(f"peft.lambda_mode={solo.lambda_mode}: Solo then keeps a λ of its own per skip, so the λ that "
                       f"{opt_name} moves is read by nothing; use peft.lambda_mode=scheduled, or a plain optimizer "
                       f"({_optimizers(False)})")
        elif solo.lambda_driver == "ramp":
            out.append(f"peft.lambda_driver=ramp: Solo's ramp and {opt_name} would both move λ; use "
                       f"peft.lambda_driver=auto (the optimizer drives it), or a plain optimizer "
                       f"({_optimizers(False)})")
    if not continuation and scheduled and solo.lambda_driver == "external":
        out.append(f"peft.lambda_driver=external: nothing moves λ with {opt_name} (not a continuation optimizer), so "
                   f"the long skips stay at λ=1; use peft.lambda_driver=auto (Solo's own ramp), or a continuation "
                   f"optimizer ({_optimizers(True)})")
    start_key = getattr(optimizer, "lambda_start_key", None)
    if (start_key and has_lambda and model.closed_form_start and getattr(model, "init", None) == "auto"
            and facts.objective == "reconstruct"
            and getattr(optimizer, start_key) >= 1 - getattr(optimizer, "finish_tol", 0.0)):
        out.append(f"optimizer.{start_key}={fmt(getattr(optimizer, start_key))}: λ starts at 1 (no continuation "
                   "path), yet model.init=auto would start the autoencoder from the closed-form λ=0 (PCA) solution "
                   "and log a λ=0 start; choose model.init=default (the standard init) or model.init=pca (the PCA "
                   "weights at λ=1)")
    return out
