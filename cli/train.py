"""`contnet train`: the Hydra entry point.  Thin: it checks the overrides (one readable line per
mistake, before anything is written), pins the run directory under torchrun, then calls
contnet.engine.run.run() in the job's output directory.

Exit codes: 0 completed; 2 a configuration error; 3 diverged (NaN/Inf loss); 128+signal when
interrupted by SIGINT/SIGTERM (a checkpoint is saved; resume with trainer.resume=<run dir>).
"""
from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

from contnet.registry import ConfigError

log = logging.getLogger("contnet")

EXIT_CONFIG, EXIT_DIVERGED = 2, 3
_INFO_FLAGS = ("-h", "--help", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc",
               "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--resolve", "--package", "-p")


def full_errors() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


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


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


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
    return f"cannot compose the config: {_one_line(msg)}"


def _combinations(argv: list[str]) -> tuple[list[list[str]], dict[str, str]]:
    """Override lists to compose: the first value of every sweep, plus one list per other sweep value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    args = [a for a in argv if not a.startswith("-") and not a.lstrip("+~").startswith("hydra")]
    parsed = []
    for a in args:
        try:
            parsed.append(OverridesParser.create().parse_overrides([a])[0])
        except Exception as e:
            raise ConfigError(f"{a}: cannot parse this override ({_one_line(str(e).splitlines()[0])}); "
                              "write key=value, group=option or a sweep a,b,c") from None
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


def precheck(argv: list[str]) -> None:
    """Compose and validate every job's config before Hydra starts (nothing is written on failure)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from contnet.validation import validate
    if any(a.split("=")[0] in _INFO_FLAGS for a in argv):
        return
    combos, arg_of = _combinations(argv)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="contnet.conf", version_base="1.3"):
            for overrides in combos:
                try:
                    cfg = compose("config", overrides=overrides)
                except (HydraException, OmegaConfBaseException) as e:
                    if full_errors():
                        raise

                    def compose_without(arg, overrides=overrides):
                        return compose("config", overrides=[o for o in overrides if o != arg])
                    raise ConfigError(_hydra_message(e, arg_of, compose_without)) from None
                validate(cfg)
    finally:
        GlobalHydra.instance().clear()


def _task_function(cfg) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from contnet.engine.run import run
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    group = name = None
    if multirun:
        sweep = Path(hc.sweep.dir)
        group = cfg.logger.get("group") or f"{sweep.parent.name}_{sweep.name}"
        name = hc.job.override_dirname or f"job{hc.job.num}"
    else:
        group = cfg.logger.get("group")
    try:
        summary = run(cfg, Path(hc.runtime.output_dir), group=group, name=name)
    except ConfigError as e:
        if full_errors():
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr)
        if multirun:
            return None                        # this job failed; the sweep goes on
        sys.exit(EXIT_CONFIG)
    if summary["status"] == "interrupted":     # a signal stops the whole sweep, not just this job
        sys.exit(128 + int(summary.get("signal") or 2))
    if summary["status"] == "diverged" and not multirun:
        sys.exit(EXIT_DIVERGED)
    return summary["final"].get("val/loss")


def main(argv: list[str]) -> int:
    import hydra

    from contnet.engine import distributed
    quiet = os.environ.get("RANK", "0") != "0"        # under torchrun, rank 0 alone reports config errors
    msg = check_group_choices(argv)
    if msg:
        if not quiet:
            print(f"error: {msg}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        precheck(argv)
    except ConfigError as e:
        if full_errors():
            raise
        if not quiet:
            print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_CONFIG
    ctx = distributed.init_from_env()
    try:
        if ctx.enabled:
            from omegaconf import OmegaConf
            from importlib import resources
            raw = OmegaConf.to_container(OmegaConf.create(
                (resources.files("contnet.conf") / "config.yaml").read_text()), resolve=False)["hydra"]
            argv = distributed.pin_output_dirs(argv, {"hydra.run.dir": raw["run"]["dir"],
                                                      "hydra.sweep.dir": raw["sweep"]["dir"]}, ctx)
        app = hydra.main(version_base="1.3", config_path="pkg://contnet.conf", config_name="config")(_task_function)
        sys.argv = ["contnet train", *argv]
        app()
    finally:
        distributed.shutdown()
    return 0
