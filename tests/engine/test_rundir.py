"""A run directory holds one run, and nothing in it is lost: a resume that fails leaves the source run
byte-identical; a second run into a run directory is refused unless it resumes or overwrites; a resume
keeps metrics.jsonl up to the checkpoint only; run files never go into the working directory; every run
that starts ends with a summary.json status, a configuration error writes nothing."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from contnet.registry import MODELS, ConfigError
from tests.helpers.cli import cli_inprocess, run_cli
from tests.helpers.config import compose
from tests.helpers.runs import SignalAtStep as _SignalAtStep
from tests.helpers.runs import curves, read_metrics, run_inprocess

BASE = ["task=digits", "model.width=16", "trainer.max_steps=20", "trainer.eval_every=10", "trainer.eval_train=false",
        "trainer.checkpoint_every=10", "trainer.threads=1"]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def one_error_line(res) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("source") / "run"
    assert run_inprocess(BASE, run_dir)["status"] == "completed"
    return run_dir


def corrupt(ckpt: Path) -> None:
    ckpt.write_bytes(b"\x00garbage" * 64)


def truncate(ckpt: Path) -> None:
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])


def not_a_checkpoint(ckpt: Path) -> None:
    torch.save({"weights": torch.zeros(3)}, ckpt)


def without_identity(ckpt: Path) -> None:
    saved = torch.load(ckpt, weights_only=False)
    del saved["run"]
    torch.save(saved, ckpt)


DAMAGE = {  # name: (what happens to checkpoints/last.pt, overrides of the resuming run, words of the error)
    "corrupt": (corrupt, [], "corrupt or truncated"),
    "truncated": (truncate, [], "corrupt or truncated"),
    "not_a_checkpoint": (not_a_checkpoint, [], "not a contnet checkpoint"),
    "other_model": (None, ["model.width=24"], "model.width=24 (the checkpoint's run has model.width=16)"),
    "other_optimizer": (None, ["optimizer=rmsprop"], "optimizer.name=rmsprop (the checkpoint's run has optimizer.name=adam)"),
    # a checkpoint from before runs recorded their identity: the tensors and the optimizer's kind still decide
    "other_model_old_checkpoint": (without_identity, ["model.width=24"], "does not fit this config"),
    "other_optimizer_old_checkpoint": (without_identity, ["optimizer=rmsprop"], "does not fit this config"),
    "fp16_on_cpu": (None, ["trainer.precision=fp16", "trainer.device=cpu"], "fp16 needs CUDA"),
}
CLI_CASES = ("truncated", "other_model", "fp16_on_cpu")


@pytest.mark.parametrize("case, cli", [*((c, cli_inprocess) for c in DAMAGE),
                                       *(pytest.param(c, run_cli, marks=pytest.mark.slow) for c in CLI_CASES)])
def test_a_failed_resume_leaves_the_source_run_byte_identical(tmp_path, source, case, cli):
    damage, extra, words = DAMAGE[case]
    src = tmp_path / "src"
    shutil.copytree(source, src)
    if damage is not None:
        damage(src / "checkpoints" / "last.pt")
    before = snapshot(src)
    over = [*BASE, "trainer.max_steps=30", *extra]           # more steps: a real continuation, not "already done"
    if case in CLI_CASES:          # the CLI for some (in this process; a real process too in the slow suite)
        res = cli(["train", f"hydra.run.dir={tmp_path / 'new'}", f"trainer.resume={src}", *over], cwd=tmp_path)
        assert res.returncode == 2 and words in one_error_line(res)
        assert snapshot(src) == before
    with pytest.raises(ConfigError, match=re.escape(words)):  # the same in place (trainer.resume=auto), from Python
        run_inprocess([*over, "trainer.resume=auto"], src)
    assert snapshot(src) == before


def test_a_second_run_into_a_run_dir_is_refused_unless_it_overwrites(tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", f"hydra.run.dir={run_dir}", *BASE, "trainer.progress=false"]
    assert cli_inprocess([*args, "seed=0"], cwd=tmp_path).returncode == 0
    before = snapshot(run_dir)
    res = cli_inprocess([*args, "seed=1"], cwd=tmp_path)     # its process: test_bad_inputs' run dir holding a run
    line = one_error_line(res)
    assert res.returncode == 2 and "trainer.resume=auto" in line and "trainer.overwrite=true" in line
    assert {k: v for k, v in snapshot(run_dir).items() if not k.startswith(".hydra")} == \
        {k: v for k, v in before.items() if not k.startswith(".hydra")}
    res = cli_inprocess([*args, "seed=1", "trainer.overwrite=true", "trainer.resume=auto"], cwd=tmp_path)
    assert res.returncode == 2 and "contradict" in one_error_line(res)
    assert cli_inprocess([*args, "seed=1", "trainer.overwrite=true"], cwd=tmp_path).returncode == 0
    run_inprocess([*BASE, "seed=1"], tmp_path / "alone")
    assert curves(run_dir) == curves(tmp_path / "alone")            # one run, seed 1 only, no leftovers
    assert json.loads((run_dir / "summary.json").read_text())["seed"] == 1


def test_resume_auto_without_a_checkpoint(tmp_path):
    """Killed before its first checkpoint (metrics, no summary): start over cleanly, no duplicate steps.
    A finished run without a checkpoint (here: its checkpoint deleted) is refused instead."""
    run_dir = tmp_path / "run"
    run_inprocess(BASE, run_dir)
    shutil.rmtree(run_dir / "checkpoints")
    finished = snapshot(run_dir)
    with pytest.raises(ConfigError, match="holds a finished run"):
        run_inprocess([*BASE, "trainer.resume=auto"], run_dir)
    assert snapshot(run_dir) == finished
    (run_dir / "summary.json").unlink()
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"step": 7, "train/loss": 1')                      # a line cut by the kill
    assert run_inprocess([*BASE, "trainer.resume=auto"], run_dir)["status"] == "completed"
    run_inprocess(BASE, tmp_path / "fresh")
    assert curves(run_dir) == curves(tmp_path / "fresh")


def test_resume_truncates_metrics_to_the_checkpoint_step(tmp_path, monkeypatch):
    from contnet.engine import run as run_mod
    over = [*BASE, "trainer.checkpoint_every=0", "trainer.checkpoint_every_s=0", "trainer.log_every=1"]
    run_inprocess(over, tmp_path / "ref")
    make = run_mod.make_loggers
    monkeypatch.setattr(run_mod, "make_loggers", lambda *a, **k: [*make(*a, **k), _SignalAtStep(12)])
    cut = run_inprocess(over, tmp_path / "cut")
    monkeypatch.setattr(run_mod, "make_loggers", make)
    assert cut["status"] == "interrupted" and cut["steps"] == 13
    with (tmp_path / "cut" / "metrics.jsonl").open("a") as f:    # records past the checkpoint (a later kill)
        f.write('{"step": 14, "train/loss": 9.0}\n{"step": 15, "train/loss": 9.0}\n{"step": 1')
    run_inprocess([*over, "trainer.resume=auto"], tmp_path / "cut")
    assert curves(tmp_path / "cut") == curves(tmp_path / "ref")


@pytest.mark.parametrize("run_dir", ["", ".", "cwd"])
def test_run_files_never_go_into_the_working_directory(tmp_path, monkeypatch, run_dir):
    from contnet.engine.run import run
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="working directory"):
        run(compose(BASE), tmp_path if run_dir == "cwd" else run_dir)
    assert list(tmp_path.iterdir()) == []


def _broken_model(exc: BaseException):
    def build(cfg, task):
        raise exc
    return build


@pytest.mark.parametrize("exc,status", [(RuntimeError("boom in the builder"), "failed"),
                                        (KeyboardInterrupt(), "interrupted")])
def test_a_failure_while_building_the_model_ends_with_a_summary(tmp_path, monkeypatch, exc, status):
    MODELS.names()                                              # load the registry before patching it
    monkeypatch.setitem(MODELS._items, "mlp", _broken_model(exc))
    with pytest.raises(type(exc)):
        run_inprocess(BASE, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == status and summary["error"].startswith(type(exc).__name__)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_configuration_error_found_by_a_builder_writes_nothing(tmp_path, monkeypatch):
    MODELS.names()
    monkeypatch.setitem(MODELS._items, "mlp", _broken_model(ConfigError("model.width=16: does not fit")))
    with pytest.raises(ConfigError):
        run_inprocess(BASE, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_failure_during_training_ends_failed_with_the_error(tmp_path, monkeypatch):
    from contnet.engine import loop

    def broken_fit(**kw):
        raise RuntimeError("boom in fit")
    monkeypatch.setattr(loop, "fit", broken_fit)
    with pytest.raises(RuntimeError):
        run_inprocess(BASE, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == "RuntimeError: boom in fit"
    assert summary["total_params"] > 0


def test_resume_of_a_completed_run_with_the_same_budget_changes_nothing(tmp_path, source):
    src = tmp_path / "src"
    shutil.copytree(source, src)
    before = snapshot(src)
    assert run_inprocess([*BASE, "trainer.resume=auto"], src)["status"] == "completed"
    assert snapshot(src) == before
    assert [r["step"] for r in read_metrics(src) if "train/loss" in r] == list(range(1, 21))


def test_a_file_system_without_locks_runs_without_the_lock_and_says_so(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl

    from contnet.engine import rundir

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(fcntl, "flock", no_locks)
    with caplog.at_level("WARNING", logger="contnet"):
        assert rundir.acquire(tmp_path / "run") is False
    assert "does not support locks" in caplog.text
