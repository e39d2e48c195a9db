"""`contnet eval <run dir> [key=value ...]`: decode and score a finished run again, without training.

The run's composed config (`<run>/.hydra/config.yaml`) rebuilds the task and the base model; the fine-tuned
weights come from `<run>/adapter/` (written at the end of the run: Solo, LoRA or the full model; contnet.peft.io),
or from `<run>/checkpoints/last.pt` for runs that have no adapter directory.  Overrides change the evaluation,
e.g. `task.test_size=100 task.generation.num_beams=10`.  Scores go to `<run>/eval/eval.json` (predictions and
references next to it); the run's own files are left as they are.
"""
from __future__ import annotations

import sys
from pathlib import Path

from contnet.registry import ConfigError

USAGE = "usage: contnet eval <run dir> [key=value ...]   e.g. contnet eval outputs/2026-11-30/12-00-00 task.test_size=100"


def load_config(run_dir: Path, overrides: list[str]):
    from omegaconf import OmegaConf
    path = run_dir / ".hydra" / "config.yaml"
    if not path.exists():
        raise ConfigError(f"{run_dir}: no .hydra/config.yaml; give the directory of a `contnet train` run")
    cfg = OmegaConf.load(path)
    for arg in overrides:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ConfigError(f"{arg!r}: expected key=value (e.g. task.test_size=100)")
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__" and not _option_field(cfg, key):
            raise ConfigError(f"{key}: no such key in the run's config; check `{path}`")
        OmegaConf.update(cfg, key, OmegaConf.select(OmegaConf.from_dotlist([arg]), key), merge=False, force_add=True)
    return cfg


def _option_field(cfg, key: str) -> bool:
    """`group.field` is a field of the run's option class: a key added after the run was made (e.g. task.nist)."""
    import dataclasses

    from contnet.validation import REGISTRIES
    group, _, name = key.partition(".")
    registry = REGISTRIES.get(group)
    if registry is None or "." in name or cfg.get(group) is None or cfg[group].get("name") not in registry:
        return False
    cls = registry.config(cfg[group].name)
    return cls is not None and name in {f.name for f in dataclasses.fields(cls)}


def fine_tuned_model(cfg, run_dir: Path, task):
    """The base model built as in training, with the run's fine-tuned weights on it."""
    from contnet.peft import io
    from contnet.registry import MODELS, PEFTS
    model = MODELS.get(cfg.model.name)(cfg.model, task)
    adapter = run_dir / "adapter"
    if io.saved_kind(adapter) is not None:
        return io.load(model, adapter), f"adapter ({io.saved_kind(adapter)})"
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    if not ckpt_path.exists():
        raise ConfigError(f"{run_dir}: neither adapter/ nor checkpoints/last.pt; rerun training to completion "
                          "(runs save <run>/adapter/ at the end)")
    from contnet.engine import checkpoint
    peft = cfg.get("peft")
    if peft is not None:                           # none is the identity
        model = PEFTS.get(peft.name)(peft, model, task)
    model.load_state_dict(checkpoint.read(ckpt_path)["model"])
    return model, "checkpoints/last.pt"


def evaluate(run_dir: Path, overrides: list[str]) -> dict:
    from contnet.engine import rundir, setup, startup
    from contnet.engine.io import atomic_write_json
    from contnet.engine.run import resolve_auto
    from contnet.registry import TASKS
    cfg = load_config(run_dir, overrides)
    resolve_auto(cfg)
    out = run_dir / "eval"
    out.mkdir(exist_ok=True)
    task = TASKS.get(cfg.task.name)(cfg.task, int(cfg.seed))
    task.run_dir = out                               # predictions/references land in <run>/eval/
    model, source = fine_tuned_model(cfg, run_dir, task)
    device = setup.pick_device(str(cfg.trainer.get("device", "auto")))
    model.to(device).eval()
    startup.started()                                # decoding runs at the collector's usual pace (engine/startup.py)
    metrics = {}
    for split in ("val", "test"):
        for k, v in task.evaluate(model, split, int(cfg.trainer.batch_size), device, final=True).items():
            metrics[f"{split}/{k}"] = v
    summary = rundir.read_summary(run_dir) or {}
    result = {"run_dir": str(run_dir), "weights": source, "overrides": overrides, "metrics": metrics,
              "run_status": summary.get("status"), "run_steps": summary.get("steps")}    # which weights were scored
    atomic_write_json(out / "eval.json", result)
    return result


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    run_dir = Path(argv[0]).expanduser()
    try:
        if not run_dir.is_dir():
            raise ConfigError(f"{run_dir}: not a directory; give the directory of a `contnet train` run")
        from contnet.engine import rundir
        rundir.acquire(run_dir)                      # eval/ is a write into the run: never while it trains
        try:
            result = evaluate(run_dir, argv[1:])
        finally:
            rundir.release(run_dir)
    except ConfigError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    for key, value in result["metrics"].items():
        print(f"{key:<20} {value:.4f}")
    print(f"weights: {result['weights']} · scores: {run_dir / 'eval' / 'eval.json'}")
    return 0
