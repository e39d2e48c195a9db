"""Every bad input through the CLI: one line on stderr naming the problem and the fix, exit 2, no traceback, and
nothing written (no run directory, no half-made files).  Each kind of mistake goes through a real process in the
fast suite; its variants run in this process there (`cli` parametrized with BOTH_CLIS), and through a real process
too in the slow suite."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest

from tests.helpers.cli import BOTH_CLIS, assert_one_line, cli_inprocess, run_cli
from tests.helpers.data import write_idx


def train(tmp_path, *args, cli=run_cli, **kw):
    """The real CLI by default; cli=cli_inprocess (same entry point, no process start) for a variant of a failure
    path that a real-CLI test here already tries, or for a run that only sets a test up."""
    return cli(["train", f"hydra.run.dir={tmp_path / 'run'}", "trainer.max_steps=2", *args], tmp_path, **kw)


# --- 1. malformed overrides, null where a number is needed, wrong types; `params` checks the same way -----

@pytest.mark.parametrize("args,words,cli", [
    (["=3"], ["=3", "no key", "key=value"], run_cli),                  # a real process for a malformed override
    (["optimizer.lr="], ["optimizer.lr=", "a number > 0"], cli_inprocess),
    (["model.depth=null"], ["model.depth=null", "an integer > 0", "default 2"], cli_inprocess),
    (["model.depth=abc"], ["model.depth=abc", "an integer > 0"], cli_inprocess),
    pytest.param(["model.depth=abc"], ["model.depth=abc", "an integer > 0"], run_cli, marks=pytest.mark.slow),
    (["trainer.batch_size=1.5"], ["trainer.batch_size=1.5", "integer"], cli_inprocess),
])
def test_malformed_overrides_train_and_params_say_the_same(tmp_path, args, words, cli):
    line = assert_one_line(train(tmp_path, *args, cli=cli), *words)
    assert not (tmp_path / "run").exists()
    if "or null" not in line:
        assert "null" not in line or "null is not a number" in line      # null is not offered where it crashes
    params = cli(["params", "model=mlp", "task=digits", *args], tmp_path)
    assert_one_line(params, *words)
    assert line.split("error: ", 1)[1] == [ln for ln in params.stderr.splitlines()
                                          if "error:" in ln][0].split("error: ", 1)[1]


def test_max_epochs_null_stays_allowed_with_max_steps():
    from contnet.validation import problems
    from tests.helpers.config import compose
    assert problems(compose(["trainer.max_epochs=null", "trainer.max_steps=2"])) == []
    from contnet.errors import ConfigError
    from contnet.registry import MODELS
    from contnet.schema import typed
    with pytest.raises(ConfigError) as e:                 # null where the schema wants an integer
        typed(MODELS.config("mlp"), {"depth": None})
    assert str(e.value) == "model.depth=null: must be an integer > 0 (default 2); null is not a number"


# --- 2. corrupt or truncated dataset files: "corrupt" and the exact path ------------------------------------

def _mnist_cli(tmp_path, data, download="false", **kw):
    return train(tmp_path, "task=mnist", f"task.data_dir={data}", f"task.download={download}", "model.depth=1", **kw)


def test_truncated_mnist_file_is_corrupt_and_named(tmp_path):
    write_idx(tmp_path / "d", "MNIST")
    f = tmp_path / "d" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:1000])
    line = assert_one_line(_mnist_cli(tmp_path, tmp_path / "d"), "corrupt", str(f), "truncated")
    assert "not found" not in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_garbage_mnist_label_file_is_corrupt_and_named(tmp_path, cli):
    write_idx(tmp_path / "d", "MNIST")
    f = tmp_path / "d" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    f.write_bytes(os.urandom(64))
    assert_one_line(_mnist_cli(tmp_path, tmp_path / "d", cli=cli), "corrupt", str(f))
    # with task.download=true the file is there, so torchvision would not fetch it: still an error
    assert_one_line(_mnist_cli(tmp_path, tmp_path / "d", download="true", cli=cli_inprocess), "corrupt", str(f),
                    "delete it")


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_missing_mnist_file_names_the_exact_path(tmp_path, cli):
    write_idx(tmp_path / "d", "MNIST")
    f = tmp_path / "d" / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    f.unlink()
    assert_one_line(_mnist_cli(tmp_path, tmp_path / "d", cli=cli), "not found", str(f), "task.download=true")


def _gzip_all(raw):
    for f in list(raw.iterdir()):
        (raw / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes()))
        f.unlink()


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_only_gz_files_corrupt_gz_is_named(tmp_path, cli):
    write_idx(tmp_path / "d", "MNIST")
    raw = tmp_path / "d" / "MNIST" / "raw"
    _gzip_all(raw)
    bad = raw / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:200])                       # truncated archive
    assert_one_line(_mnist_cli(tmp_path, tmp_path / "d", cli=cli), "corrupt", str(bad),
                    str(raw / "train-images-idx3-ubyte"))
    assert not (raw / "train-images-idx3-ubyte").exists()         # nothing half-unpacked


def test_only_good_gz_files_are_unpacked_and_used(tmp_path):
    write_idx(tmp_path / "d", "MNIST")
    raw = tmp_path / "d" / "MNIST" / "raw"
    _gzip_all(raw)
    res = _mnist_cli(tmp_path, tmp_path / "d", cli=cli_inprocess)            # a success: no process needed
    assert res.returncode == 0, res.stderr[-2000:]
    assert (raw / "train-images-idx3-ubyte").stat().st_size == 16 + 60 * 28 * 28


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_corrupt_cifar_batch_is_named(tmp_path, cli):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]:
        (d / name).write_bytes(b"not a pickle")
    line = assert_one_line(train(tmp_path, "task=cifar10", f"task.data_dir={tmp_path}", "task.download=false", cli=cli),
                           "corrupt", str(d / "data_batch_1"), "md5")
    assert "not found" not in line


# --- 4. an output directory that cannot be written, or an empty one ----------------------------------------

@pytest.mark.parametrize("where, cli", [("/proc/x", run_cli), ("FILE/sub", cli_inprocess), ("", cli_inprocess),
                                        pytest.param("", run_cli, marks=pytest.mark.slow), (".", cli_inprocess)])
def test_unwritable_or_empty_run_dir_is_one_line(tmp_path, where, cli):
    """A real process for an unwritable one (an empty one too in the slow suite)."""
    (tmp_path / "FILE").write_text("a file, not a folder")
    where = where.replace("FILE", str(tmp_path / "FILE"))
    res = cli(["train", f"hydra.run.dir={where}", "trainer.max_steps=2"], tmp_path)
    assert_one_line(res, "hydra.run.dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"]       # nothing written, not even in cwd


@pytest.mark.parametrize("cli", BOTH_CLIS)          # a refusal's process: the unwritable run dir above
def test_a_run_dir_holding_another_run_is_refused_before_hydra_rewrites_its_config(tmp_path, cli):
    first = train(tmp_path, "trainer.eval_every=0", cli=cli_inprocess)
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    res = train(tmp_path, "trainer.eval_every=0", "seed=5", cli=cli)
    assert_one_line(res, str(tmp_path / "run"), "trainer.resume=auto", "trainer.overwrite=true")
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_a_sweep_into_a_sweep_dir_holding_runs_is_refused_unless_resuming(tmp_path, cli):
    sweep = tmp_path / "sweep"
    args = ["train", "-m", "seed=0,1", f"hydra.sweep.dir={sweep}", "trainer.max_steps=2", "trainer.eval_every=0",
            "hydra.callbacks.report.enabled=false"]
    assert cli_inprocess(args, tmp_path).returncode == 0
    before = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()}
    assert_one_line(cli(args, tmp_path), f"hydra.sweep.dir={sweep}", "jobs 0, 1", "trainer.resume=auto")
    assert {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()} == before
    res = cli_inprocess([*args, "trainer.resume=auto"], tmp_path)         # every job already completed: nothing to do
    assert res.returncode == 0, res.stderr[-2000:]
    assert {p: p.read_bytes() for p in sweep.rglob("summary.json")} == \
        {p: b for p, b in before.items() if p.name == "summary.json"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a mode-0 directory")
def test_read_only_parent_is_one_line(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0)
    try:
        res = run_cli(["train", f"hydra.run.dir={ro / 'r'}", "trainer.max_steps=2"], tmp_path)
        assert_one_line(res, "hydra.run.dir", str(ro))
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_unwritable_sweep_dir_starts_no_job(tmp_path, cli):
    res = cli(["train", "-m", "seed=0,1", "hydra.sweep.dir=/proc/x", "trainer.max_steps=2"], tmp_path)
    assert_one_line(res, "hydra.sweep.dir=/proc/x")


# --- a failure that is not the input's fault: still one line, the traceback in the run's log -------------------

BOOM = """import sys
from contnet.registry import MODELS
MODELS._load()
def boom(cfg, task):
    raise RuntimeError("boom in the model builder")
MODELS._items["mlp"] = boom
from contnet.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _boom(cfg, task):
    raise RuntimeError("boom in the model builder")


def test_an_unexpected_failure_is_one_line_and_the_traceback_goes_to_the_log(tmp_path, monkeypatch):
    (tmp_path / "boom.py").write_text(BOOM)
    res = subprocess.run([sys.executable, str(tmp_path / "boom.py"), "train", "trainer.max_steps=2",
                          f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert_one_line(res, "RuntimeError: boom in the model builder", "contnet.log", code=1)
    assert "Traceback" in (tmp_path / "run" / "contnet.log").read_text()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"
    from contnet.registry import MODELS                  # the sweep: the same builder patched in this process
    MODELS.names()
    monkeypatch.setitem(MODELS._items, "mlp", _boom)
    sweep = tmp_path / "sweep"
    res = cli_inprocess(["train", "trainer.max_steps=2", "-m", "seed=0,1", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 3 and errors[-1] == f"error: 2 of 2 jobs did not complete (2 failed); see {sweep}"
    assert all(json.loads((sweep / str(i) / "summary.json").read_text())["status"] == "failed" for i in (0, 1))
