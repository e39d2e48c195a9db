"""Checks run before Hydra starts, so that a bad input writes nothing: `contnet train` and `contnet params`
share them.  Each failure is a ConfigError whose message is one line naming the input and the fix.

- the overrides parse and name existing groups/options (Hydra's multi-line errors become one line);
- every job of a sweep (the command line's and the preset's `hydra.sweeper.params`, expanded by Hydra's
  own basic sweeper) composes against the typed schemas (contnet/schema.py) and passes
  contnet.validation.validate; an unknown key or a wrong type is explained from the schema;
- the task's input files are there and readable (contnet.registry.TASK_CHECKS; missing files that
  `task.download=true` will fetch are left to the job);
- the run (or sweep) directory is not empty and can be created (probed with a temporary directory
  that is removed at once), and a run directory holds no other run unless resuming or overwriting
  (the engine's rules, checked before Hydra rewrites `.hydra/` there).
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contnet.errors import ConfigError

INFO_FLAGS = ("-h", "--help", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc",
              "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--resolve", "--package", "-p")
MULTIRUN_FLAGS = ("-m", "--multirun")


def full_errors() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def one_line(text) -> str:
    return " ".join(str(text).split())


def check_group_choices(argv: list[str]) -> str | None:
    """One-line message for `group=option` overrides naming an option that does not exist."""
    from contnet.cli.main import config_groups
    if any(a.startswith("hydra.searchpath=") for a in argv):
        return None                            # options outside the packaged tree: composition checks them
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


@functools.cache
def _parser():
    """Hydra's override parser, built once per process (~6 ms each)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    return OverridesParser.create()


@functools.lru_cache(maxsize=4096)
def parse_override(arg: str):
    """One override parsed by Hydra's parser, once per process (a study's runs repeat most of theirs); one that
    does not parse, or has no key, is a ConfigError."""
    try:
        o = _parser().parse_overrides([arg])[0]
    except Exception as e:
        raise ConfigError(f"{arg}: cannot parse this override ({one_line(str(e).splitlines()[0])}); "
                          "write key=value, group=option or a sweep a,b,c") from None
    if not o.key_or_group.strip():
        raise ConfigError(f"{arg}: the override has no key; write key=value, e.g. optimizer.lr=3e-4")
    return o


def _is_hydra(arg: str) -> bool:
    return arg.lstrip("+~").startswith("hydra")


def sweep_jobs(args: list[str]) -> list[list[str]]:
    """Every job's override list, expanded by Hydra's basic sweeper itself (`split_arguments`: the product
    of the sweeps, a later override of a key replacing an earlier one).  A sweep it cannot expand (glob(),
    a tuning sweeper's ranges) leaves the rest of the line, which Hydra checks when it runs."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.errors import HydraException
    parsed = [parse_override(a) for a in args]
    try:
        return BasicSweeper.split_arguments(parsed, None)[0] or [[]]
    except (HydraException, ValueError):
        return [[a for a, o in zip(args, parsed) if not o.is_sweep_override()]]


def sweep_overrides(args: list[str]) -> list[str]:
    """The overrides that sweep (a,b,c, range(), a tuning sweeper's ranges)."""
    return [a for a in args if "=" in a and parse_override(a).is_sweep_override()]


def _schema_of(node):
    """The typed class (an option's Options or a nested Block) behind a composed node (None for a plain mapping)."""
    from omegaconf import OmegaConf

    from contnet.schema import Block
    try:
        t = OmegaConf.get_type(node)
    except Exception:  # noqa: BLE001 - not a config node
        return None
    return t if isinstance(t, type) and issubclass(t, Block) else None


def _owner_schema(node):
    """The Options class of the nearest node at or above `node` that has one (a list field's owner)."""
    while node is not None:
        cls = _schema_of(node)
        if cls is not None:
            return cls
        node = node._get_parent()
    return None


def explain(e: Exception, overrides: list[str], compose) -> str:
    """A composition failure as one line naming the override and what is allowed.  The words come from
    the schema (the failing node's Options class: its fields and their types) and from the exception's
    own fields (`full_key`, `object_type`), not from Hydra's message text."""
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    from contnet.schema import Options, field_names, type_message
    cause = e.__cause__ if e.__cause__ is not None else e
    full_key = re.sub(r"(\[\d+\])+$", "", str(getattr(cause, "full_key", "") or ""))   # a list element: its field
    arg_of = {parse_override(a).get_key_element().lstrip("+~"): a for a in overrides}
    arg = arg_of.get(full_key)
    if full_key and arg is not None:
        parent_key, _, leaf = full_key.rpartition(".")
        value = arg.split("=", 1)[1] if "=" in arg else None
        if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
            try:
                base = compose([o for o in overrides if o != arg])
                parent = OmegaConf.select(base, parent_key) if parent_key else base
            except Exception:  # noqa: BLE001 - without the listing the line still names the key
                parent = None
            cls = _schema_of(parent) if parent is not None else None
            if cls is not None:
                where = f"{cls.group}={cls.option}" if cls.option else cls.group      # a nested node: its path
                return f"{full_key}={value}: unknown key for {where}; its keys are: {', '.join(field_names(cls))}"
            keys = f"; keys there: {', '.join(map(str, parent.keys()))}" if parent is not None else ""
            return f"{arg}: unknown key{f' in {parent_key}' if parent_key else ''}{keys} (a new key needs +{arg})"
        cls = getattr(cause, "object_type", None)
        if isinstance(cause, ValidationError) and not (isinstance(cls, type) and issubclass(cls, Options)):
            cls = _owner_schema(getattr(cause, "parent_node", None))   # a list element: object_type is list
        if isinstance(cause, ValidationError) and cls is not None and leaf in field_names(cls):
            return type_message(cls, leaf, parse_override(arg).value(), text=value)
    for arg in overrides:                          # optimizer/npacs=authors on an option without that block
        key = parse_override(arg).get_key_element().lstrip("+~")
        if "/" in key and not key.startswith("hydra") and arg_of.get(key) == arg:
            group, sub = key.split("/", 1)
            try:
                chosen = compose([o for o in overrides if o != arg])[group].name
            except Exception:  # noqa: BLE001 - another override is at fault
                continue
            users = _options_with_block(group, sub)
            if chosen not in users:
                return (f"{arg}: {group}={chosen} has no {key} block; it applies to {group}="
                        f"{', '.join(users) or '(none)'}")
    return f"cannot compose the config: {one_line(e)}"


def _options_with_block(group: str, sub: str) -> list[str]:
    """Options of `group` whose YAML defaults list selects the sub-group `sub` (e.g. npacs in cadam.yaml)."""
    from importlib import resources

    from omegaconf import OmegaConf
    out = []
    for f in sorted((resources.files("contnet.conf") / group).iterdir(), key=lambda p: p.name):
        if f.name.endswith(".yaml"):
            defaults = OmegaConf.to_container(OmegaConf.create(f.read_text())).get("defaults") or []
            if any(isinstance(d, dict) and sub in d for d in defaults):
                out.append(f.name[:-5])
    return out


_ABSENT = object()


def check_appends(overrides: list[str], compose) -> None:
    """`+key=value` adds a key; on a key the config already has, Hydra answers with a paragraph: one line here."""
    from omegaconf import OmegaConf
    adds = [a for a in overrides if a.startswith("+") and not a.startswith("++") and "=" in a]
    if not adds:
        return
    base = compose([o for o in overrides if o not in adds])
    for arg in adds:
        key = arg[1:].split("=", 1)[0]
        if "." not in key and "/" not in key and key not in base:
            raise ConfigError(f"{arg[1:]}: unknown top-level key; the keys are: {', '.join(map(str, base.keys()))}")
        if "/" not in key and OmegaConf.select(base, key, default=_ABSENT) is not _ABSENT:
            raise ConfigError(f"{arg}: {key} already exists; override it without the leading +")


def check_task_files(task_cfg) -> None:
    """The registered file check of this task, if it has one (raises ConfigError)."""
    from contnet.registry import TASK_CHECKS
    name = str(task_cfg.get("name"))
    if name in TASK_CHECKS:
        TASK_CHECKS.get(name)(task_cfg)


PATH_RESERVE = 128      # bytes left for the longest path a run writes inside its directory (W&B, TensorBoard files)


def _existing_parent(target: Path) -> Path:
    """The nearest folder at or above `target` that exists (a name too long to look up does not)."""
    parent = target
    while parent.parent != parent:
        try:
            if parent.exists():
                return parent
        except OSError:                        # ENAMETOOLONG and the like: not there
            pass
        parent = parent.parent
    return parent


def _shown(text: str) -> str:
    return text if len(text) <= 100 else f"{text[:60]}...({len(text)} characters)"


def check_output_dir(path, key: str) -> None:
    """The directory Hydra will create (and write .hydra/ into) must be named, fit the file system's name and
    path lengths, and be creatable."""
    text = "" if path is None else str(path).strip()
    if not text:
        raise ConfigError(f"{key} is empty: the run files would land in the working directory; give a "
                          f"directory, e.g. {key}=outputs/myrun")
    target = Path(text).expanduser().absolute()
    parent = _existing_parent(target)
    limit = {}
    for name, default in (("PC_NAME_MAX", 255), ("PC_PATH_MAX", 4096)):
        try:
            limit[name] = os.pathconf(parent, name)
        except (OSError, ValueError):
            limit[name] = default
    for part in target.relative_to(parent).parts:
        if len(os.fsencode(part)) > limit["PC_NAME_MAX"]:
            raise ConfigError(f"{key}={_shown(text)}: a folder name in it is {len(os.fsencode(part))} bytes long and "
                              f"this file system allows {limit['PC_NAME_MAX']}; choose a shorter {key}")
    if len(os.fsencode(str(target))) + PATH_RESERVE > limit["PC_PATH_MAX"]:
        raise ConfigError(f"{key}={_shown(text)}: the path is {len(os.fsencode(str(target)))} bytes long; the files "
                          f"of a run inside it must stay under the system's {limit['PC_PATH_MAX']}, so keep it under "
                          f"{limit['PC_PATH_MAX'] - PATH_RESERVE}; choose a shorter {key}")
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
    """The engine's own run-directory rules (contnet.engine.rundir), applied before Hydra starts: not the working
    directory, not a sweep's directory, one run per directory unless trainer.resume / trainer.overwrite say
    otherwise, and no other process writing there: the run's lock is taken here (released when the command ends)."""
    import logging

    from contnet.engine import rundir
    run_dir = rundir.check_run_dir(where)
    if rundir.sweep_job_folder(run_dir):
        raise ConfigError(f"hydra.run.dir={where} is a job folder of the sweep in {run_dir.parent}; a single run there "
                          "would take a job's place in its report: choose another hydra.run.dir")
    resume_from, run_dir = rundir.resume_checkpoint(cfg.trainer.get("resume"), run_dir)
    if os.environ.get("RANK", "0") == "0" and run_dir.is_dir():      # a run there: no second writer from now on
        rundir.acquire(run_dir)
    logging.disable(logging.WARNING)           # the run itself says what it decided
    try:
        rundir.plan_fresh_start(cfg.trainer, run_dir, resume_from is not None)
    finally:
        logging.disable(logging.NOTSET)


def check_sweep_dir_holds_no_other_runs(cfg, where, subdir, n_jobs: int) -> None:
    """The same rules for a sweep: its directory is not a single run's, no other sweep writes there (its lock
    is taken here), and the job directories it will use (`<sweep dir>/<job number>`, the default subdir; a
    preset's own sweeper params may add jobs beyond the command line's, unchecked here) do not hold runs of an
    earlier sweep unless every job resumes (trainer.resume=auto) or starts over (trainer.overwrite=true).
    Starting over also removes the earlier sweep's job folders beyond this sweep's jobs, so that no report
    mixes the two.  The study runner (contnet.studies: `contnet tune`, `contnet reproduce`) manages its own
    folders."""
    from contnet.engine import rundir
    root = Path(str(where)).expanduser()
    if os.environ.get("RANK", "0") == "0" and root.is_dir():
        rundir.acquire(root)
    held_here = [f for f in ("metrics.jsonl", "summary.json") if (root / f).exists()]
    if held_here:
        raise ConfigError(f"hydra.sweep.dir={where} holds a single run ({', '.join(held_here)}); a sweep there would "
                          "mix with it: choose another hydra.sweep.dir")
    if str(subdir) != "${hydra.job.num}" or not n_jobs:
        return
    jobs = sorted((int(p.name) for p in root.iterdir() if p.name.isdigit() and p.is_dir()) if root.is_dir() else [])
    held = [i for i in jobs if (root / str(i) / "metrics.jsonl").exists() or (root / str(i) / "summary.json").exists()]
    resume, overwrite = cfg.trainer.get("resume") == "auto", cfg.trainer.get("overwrite", False)
    if held and not (resume or overwrite):
        raise ConfigError(f"hydra.sweep.dir={where} already holds runs (jobs {', '.join(map(str, held[:5]))}"
                          f"{', ...' if len(held) > 5 else ''}); continue them with trainer.resume=auto, start over "
                          "with trainer.overwrite=true, or choose another hydra.sweep.dir")
    if overwrite:
        for i in jobs:
            if i >= n_jobs:
                shutil.rmtree(root / str(i))


def _output_key(argv: list[str]) -> str:
    multirun = any(a in MULTIRUN_FLAGS for a in argv) or "hydra.mode=MULTIRUN" in argv
    return "hydra.sweep.dir" if multirun else "hydra.run.dir"


def _preset_sweep(hcfg) -> list[str]:
    """`hydra.sweeper.params` of the composed config (an experiment preset's sweep) as overrides, when the
    basic sweeper runs it; other sweepers (e.g. Optuna's) choose their own values."""
    from omegaconf import OmegaConf
    sweeper = OmegaConf.select(hcfg, "hydra.sweeper")
    if sweeper is None or "BasicSweeper" not in str(sweeper.get("_target_", "")):
        return []
    params = OmegaConf.to_container(sweeper, resolve=False).get("params") or {}
    return [f"{k}={v}" for k, v in params.items()]


_NOTHING_RUNS = object()
_VALUE_FLAGS = ("--cfg", "-c", "--package", "-p")      # the info flags kept by _config_to_print that take a value


def _config_to_print(argv: list[str]):
    """None without info flags; the overrides alone for `--cfg job|all` (with `--resolve`, `--package`), whose
    config is checked like a run's; _NOTHING_RUNS for any other info flag (help, --info, `--cfg hydra`, another
    config path or name: Hydra answers and composes nothing of ours)."""
    flags = [a.split("=")[0] for a in argv if a.split("=")[0] in INFO_FLAGS]
    if not flags:
        return None
    if not set(flags) <= {"--cfg", "-c", "--resolve", "--package", "-p"} or not {"--cfg", "-c"} & set(flags):
        return _NOTHING_RUNS
    rest, i = [], 0
    while i < len(argv):
        flag, eq, value = argv[i].partition("=")
        if flag in _VALUE_FLAGS and not eq:
            value = argv[i + 1] if i + 1 < len(argv) else ""
            i += 1
        if flag in ("--cfg", "-c") and value not in ("job", "all"):
            return _NOTHING_RUNS
        if flag not in (*_VALUE_FLAGS, "--resolve"):
            rest.append(argv[i])
        i += 1
    return rest


@dataclass
class Composed:
    """What the check composed, for `contnet train` to run as it is (cli/train.py), so that a run composes its
    config once and a sweep each job once (tests/topics/test_startup.py counts them).
    `config`: a run's config with its `hydra` node, composed from the overrides as written (Hydra's run composes
    the same); for a sweep, its master config as Hydra's multirun composes it (the `hydra` node that configures
    the sweeper, launcher and callbacks).  `jobs`: a sweep's job configs by their overrides, each composed from
    the master as Hydra's launcher composes it (`load_sweep_config`).  `mode`: the hydra.mode the config chose
    itself (None: the command line's; the master's mode is set to MULTIRUN, as Hydra's main sets it)."""
    config: Any
    jobs: dict = field(default_factory=dict)
    mode: Any = None


def _sweep_master(overrides: list[str]):
    """A sweep's master config, composed as Hydra's main and multirun compose it (hydra/_internal/utils.py
    `_run_app`: the MULTIRUN mode, set when the config sets none), its sweep directory resolved before any job is
    composed (as the sweeper does), so that every job copies the same `${now:...}` (`load_sweep_config`)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict, read_write
    cfg = GlobalHydra.instance().hydra.compose_config("config", overrides, run_mode=RunMode.MULTIRUN)
    mode = cfg.hydra.mode
    if mode is None:
        with read_write(cfg.hydra), open_dict(cfg.hydra):
            cfg.hydra.mode = RunMode.MULTIRUN
            cfg.hydra.overrides.hydra.append("hydra.mode=MULTIRUN")
    OmegaConf.select(cfg, "hydra.sweep.dir", throw_on_resolution_failure=False)   # a failure: _check_output_dirs
    return Composed(cfg, mode=mode)


def precheck(argv: list[str], output_dir: bool = True, task_files: bool = True) -> Composed | None:
    """Compose and validate every job's config, check the task files and the output directory, before
    Hydra starts (nothing is written on failure).  Returns what it composed (`Composed`; None when nothing was):
    the configs Hydra would compose for this command line, which `contnet train` runs as they are."""
    from hydra import compose as hydra_compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    printed = _config_to_print(argv)
    if printed is _NOTHING_RUNS:
        return None
    if printed is not None:                    # --cfg job|all: what Hydra prints must be a config that would run
        argv, output_dir, task_files = printed, False, False
    args = [a for a in argv if not a.startswith("-") and not _is_hydra(a)]
    hydra_args = [a for a in argv if not a.startswith("-") and _is_hydra(a)]
    key = _output_key(argv)
    failures = (HydraException, OmegaConfBaseException, ValueError)

    def compose(overrides: list[str], hydra_config: bool = False):
        return hydra_compose("config", overrides=[*overrides, *hydra_args], return_hydra_config=hydra_config)

    def composed(overrides: list[str], how=None):
        """`how()` (default: `overrides` composed); a failure as one line naming the override at fault."""
        try:
            return how() if how is not None else compose(overrides)
        except failures as e:
            if full_errors():
                raise
            raise ConfigError(explain(e, overrides, compose)) from None   # values as the sweeper prints them

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="contnet.conf", version_base="1.3"):
            jobs = sweep_jobs(args)
            check_appends(jobs[0], compose)
            sweep = key == "hydra.sweep.dir"
            if not sweep:                  # a run: composed from its overrides as written, as Hydra's run does
                written = args if not sweep_overrides(args) else jobs[0]
                hcfg = composed(jobs[0], lambda: compose(written, hydra_config=True))
                out = Composed(hcfg, mode=hcfg.hydra.mode)
            else:
                out = composed(jobs[0], lambda: _sweep_master([*args, *hydra_args]))
                preset = _preset_sweep(out.config)
                jobs = sweep_jobs([*preset, *args]) if preset else jobs
            cfg = _check_jobs(jobs, out if sweep else None, composed, task_files, first=out.config)
            if output_dir:
                _check_output_dirs(out.config, cfg, key, len(jobs), failures)
            return out
    finally:
        GlobalHydra.instance().clear()


def _check_jobs(jobs: list[list[str]], sweep: Composed | None, composed, task_files: bool, first):
    """Every job's config through contnet.validation (and its task's files, once per task).  A run's job 0 is
    `first`, composed already; a sweep's jobs are composed from its master (`sweep.config`) as Hydra's launcher
    composes them, and kept in `sweep.jobs` for it.  Returns the last job's config."""
    from hydra.core.global_hydra import GlobalHydra

    from contnet.validation import validate
    loader = GlobalHydra.instance().hydra.config_loader
    checked_tasks: list = []
    cfg = None
    for i, overrides in enumerate(jobs):
        if sweep is not None:
            cfg = composed(overrides, lambda: loader.load_sweep_config(sweep.config, list(overrides)))
            sweep.jobs[tuple(overrides)] = cfg
        else:
            cfg = first if i == 0 else composed(overrides)
        validate(cfg)
        if task_files and cfg.task not in checked_tasks:          # a sweep over seeds checks the files once
            check_task_files(cfg.task)
            checked_tasks.append(cfg.task)
    return cfg


def _check_output_dirs(hcfg, cfg, key: str, n_jobs: int, failures) -> None:
    """The run (or sweep) directory of `hcfg`'s hydra settings: creatable, and holding no other run (sweep)."""
    from omegaconf import OmegaConf
    try:
        where = hcfg.hydra.sweep.dir if key == "hydra.sweep.dir" else hcfg.hydra.run.dir
        subdir = OmegaConf.to_container(hcfg.hydra.sweep, resolve=False).get("subdir")
    except failures as e:
        if full_errors():
            raise
        raise ConfigError(f"cannot compose the hydra settings: {one_line(e)}") from None
    check_output_dir(where, key)
    if key == "hydra.run.dir":
        check_run_dir_holds_no_other_run(cfg, where)
    else:
        check_sweep_dir_holds_no_other_runs(cfg, where, subdir, n_jobs)


def check_overrides(argv: list[str], output_dir: bool = True, task_files: bool = True):
    """Every check above, in order (raises ConfigError with one line); returns what `precheck` composed.
    `contnet params` writes nothing and reads task files only when it builds the task, so it leaves out the
    last two."""
    msg = check_group_choices(argv)
    if msg:
        raise ConfigError(msg)
    return precheck(argv, output_dir=output_dir, task_files=task_files)
