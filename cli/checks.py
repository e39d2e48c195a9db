"""Checks run before Hydra starts, so that a bad input writes nothing: `contnet train` and `contnet params`
share them.  Each failure is a ConfigError whose message is one line naming the input and the fix.

- the overrides parse and name existing groups/options/keys (Hydra's multi-line errors become one line);
- every job of a sweep composes and passes contnet.validation.validate;
- the task's input files are there and readable (contnet.registry.TASK_CHECKS; missing files that
  `task.download=true` will fetch are left to the job);
- the run (or sweep) directory is not empty and can be created (probed with a temporary directory
  that is removed at once), and a run directory holds no other run unless resuming or overwriting
  (the engine's rules, checked before Hydra rewrites `.hydra/` there).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from contnet.registry import ConfigError

INFO_FLAGS = ("-h", "--help", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc",
              "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--resolve", "--package", "-p")


def full_errors() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def one_line(text) -> str:
    return " ".join(str(text).split())


def check_group_choices(argv: list[str]) -> str | None:
    """One-line message for `group=option` overrides naming an option that does not exist."""
    from contnet.cli.main import config_groups
    groups = config_groups()
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+")
        if key not in groups or value in ("null", ""):
            continue
        for choice in value.split(","):       # multirun sweeps: a,b,c
            if choice not in groups[key]:
                return (f"{key}={choice}: unknown {key} '{choice}'; choose one of: {', '.join(groups[key])}")
    return None


def _hydra_message(e: Exception, arg_of: dict[str, str], compose_without) -> str:
    """Hydra's multi-line composition errors as one line naming the override and what is allowed."""
    msg = str(e)
    cause = str(e.__cause__ or "")
    m = re.search(r"Could not override '([^']+)'", msg)
    if m and "not in struct" in (msg + cause):
        key = m.group(1)
        arg = arg_of.get(key, key)
        parent, _, leaf = key.rpartition(".")
        known = ""
        try:                                   # the keys that do exist there, from the config without this override
            from omegaconf import OmegaConf
            node = compose_without(arg)
            node = OmegaConf.select(node, parent) if parent else node
            known = "; keys there: " + ", ".join(map(str, node.keys()))
        except Exception:                      # noqa: BLE001 - the listing is a courtesy
            pass
        return f"{arg}: unknown key{f' in {parent}' if parent else ''}{known} (a new key needs +{arg})"
    m = re.search(r"Could not append to config. An item is already at '([^']+)'", msg)
    if m:
        arg = arg_of.get(m.group(1), m.group(1))
        return f"{arg}: {m.group(1)} already exists; override it without the leading +"
    return f"cannot compose the config: {one_line(msg)}"


def _parse(arg: str):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    try:
        o = OverridesParser.create().parse_overrides([arg])[0]
    except Exception as e:
        raise ConfigError(f"{arg}: cannot parse this override ({one_line(str(e).splitlines()[0])}); "
                          "write key=value, group=option or a sweep a,b,c") from None
    if not o.key_or_group.strip():
        raise ConfigError(f"{arg}: the override has no key; write key=value, e.g. optimizer.lr=3e-4")
    return o


def _combinations(argv: list[str]) -> tuple[list[list[str]], dict[str, str]]:
    """Override lists to compose: the first value of every sweep, plus one list per other sweep value.
    (The command line's number of jobs is the product of the sweeps' lengths; see _job_count.)"""
    args = [a for a in argv if not a.startswith("-") and not a.lstrip("+~").startswith("hydra")]
    parsed = [_parse(a) for a in args]
    values = []
    for a, o in zip(args, parsed):
        if o.is_sweep_override():
            try:
                values.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
            except Exception:     # glob(): needs the config loader; Hydra checks it when it runs
                values.append([])
        else:
            values.append([a])
    base = [v[0] for v in values if v]
    combos = [base]
    for i, vs in enumerate(values):
        for v in vs[1:]:
            combos.append([*[x[0] for x in values[:i] if x], v, *[x[0] for x in values[i + 1:] if x]])
    arg_of = {o.key_or_group: a for a, o in zip(args, parsed)}
    return combos, arg_of


def check_task_files(task_cfg) -> None:
    """The registered file check of this task, if it has one (raises ConfigError)."""
    from contnet.registry import TASK_CHECKS
    name = str(task_cfg.get("name"))
    if name in TASK_CHECKS:
        TASK_CHECKS.get(name)(task_cfg)


def check_output_dir(path, key: str) -> None:
    """The directory Hydra will create (and write .hydra/ into) must be named and creatable."""
    text = "" if path is None else str(path).strip()
    if not text:
        raise ConfigError(f"{key} is empty: the run files would land in the working directory; give a "
                          f"directory, e.g. {key}=outputs/myrun")
    target = Path(text).expanduser().absolute()
    parent = target
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{key}={text}: {parent} is a file, not a directory; choose another {key}")
    if target.exists() and os.access(target, os.W_OK | os.X_OK) and target.is_dir():
        return
    try:                                       # a real probe: root passes os.access checks where mkdir fails
        shutil.rmtree(tempfile.mkdtemp(prefix=".contnet-probe-", dir=parent))
    except OSError as e:
        raise ConfigError(f"{key}={text}: cannot create a directory in {parent} ({e.strerror or e}); choose a "
                          f"writable {key}") from None


def check_run_dir_holds_no_other_run(cfg, where) -> None:
    """The engine's own run-directory rules (contnet.engine.run), applied before Hydra rewrites `.hydra/` in
    a directory that holds another run: not the working directory, and one run per directory unless
    trainer.resume / trainer.overwrite say otherwise."""
    import logging

    from contnet.engine.run import check_run_dir, plan_fresh_start, resume_checkpoint
    run_dir = check_run_dir(where)
    resuming = resume_checkpoint(cfg.trainer.get("resume"), run_dir)[0] is not None
    logging.disable(logging.WARNING)           # the run itself says what it decided
    try:
        plan_fresh_start(cfg.trainer, run_dir, resuming)
    finally:
        logging.disable(logging.NOTSET)


def _job_count(argv: list[str]) -> int | None:
    """Jobs the command line's sweeps make (None when a sweep cannot be expanded here, e.g. glob())."""
    n = 1
    for a in argv:
        if a.startswith("-") or a.lstrip("+~").startswith("hydra"):
            continue
        o = _parse(a)
        if o.is_sweep_override():
            try:
                n *= len(list(o.sweep_string_iterator()))
            except Exception:                  # noqa: BLE001 - glob() needs the config loader
                return None
    return n


def check_sweep_dir_holds_no_other_runs(cfg, where, subdir, n_jobs: int | None) -> None:
    """The same rule for a sweep: the job directories it will use (`<sweep dir>/<job number>`, the default
    subdir; a preset's own sweeper params may add jobs beyond the command line's, unchecked here) must not
    hold runs of an earlier sweep unless every job resumes (trainer.resume=auto) or starts over
    (trainer.overwrite=true).  Drivers with their own subdir pattern (contnet.tune) manage their folders."""
    if cfg.trainer.get("resume") == "auto" or cfg.trainer.get("overwrite", False):
        return
    if str(subdir) != "${hydra.job.num}" or not n_jobs:
        return
    root = Path(str(where)).expanduser()
    held = [str(i) for i in range(n_jobs)
            if (root / str(i) / "metrics.jsonl").exists() or (root / str(i) / "summary.json").exists()]
    if held:
        raise ConfigError(f"hydra.sweep.dir={where} already holds runs (jobs {', '.join(held[:5])}"
                          f"{', ...' if len(held) > 5 else ''}); continue them with trainer.resume=auto, start over "
                          "with trainer.overwrite=true, or choose another hydra.sweep.dir")


def _output_key(argv: list[str]) -> str:
    multirun = any(a in ("-m", "--multirun") for a in argv) or "hydra.mode=MULTIRUN" in argv
    return "hydra.sweep.dir" if multirun else "hydra.run.dir"


def precheck(argv: list[str], output_dir: bool = True, task_files: bool = True) -> None:
    """Compose and validate every job's config, check the task files and the output directory, before
    Hydra starts (nothing is written on failure)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from contnet.validation import validate
    if any(a.split("=")[0] in INFO_FLAGS for a in argv):
        return
    combos, arg_of = _combinations(argv)
    hydra_args = [a for a in argv if not a.startswith("-") and a.lstrip("+~").startswith("hydra")]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="contnet.conf", version_base="1.3"):
            checked_tasks: list = []
            for overrides in combos:
                try:
                    cfg = compose("config", overrides=overrides)
                except (HydraException, OmegaConfBaseException, ValueError) as e:
                    if full_errors():
                        raise

                    def compose_without(arg, overrides=overrides):
                        return compose("config", overrides=[o for o in overrides if o != arg])
                    raise ConfigError(_hydra_message(e, arg_of, compose_without)) from None
                validate(cfg)
                if task_files and cfg.task not in checked_tasks:          # a sweep over seeds checks the files once
                    check_task_files(cfg.task)
                    checked_tasks.append(cfg.task)
            if output_dir:
                key = _output_key(argv)
                try:
                    hcfg = compose("config", overrides=[*combos[0], *hydra_args], return_hydra_config=True)
                    where = hcfg.hydra.sweep.dir if key == "hydra.sweep.dir" else hcfg.hydra.run.dir
                    subdir = OmegaConf.to_container(hcfg.hydra.sweep, resolve=False).get("subdir")
                except (HydraException, OmegaConfBaseException, ValueError) as e:
                    if full_errors():
                        raise
                    raise ConfigError(f"cannot compose the hydra settings: {one_line(e)}") from None
                check_output_dir(where, key)
                if key == "hydra.run.dir":
                    check_run_dir_holds_no_other_run(cfg, where)
                else:
                    check_sweep_dir_holds_no_other_runs(cfg, where, subdir, _job_count(argv))
    finally:
        GlobalHydra.instance().clear()


def check_overrides(argv: list[str], output_dir: bool = True, task_files: bool = True) -> None:
    """Every check above, in order (raises ConfigError with one line).  `contnet params` writes nothing
    and reads task files only when it builds the task, so it leaves out the last two."""
    msg = check_group_choices(argv)
    if msg:
        raise ConfigError(msg)
    precheck(argv, output_dir=output_dir, task_files=task_files)
