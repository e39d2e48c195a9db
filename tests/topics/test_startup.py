"""Start-up paid once (issue 19, item 5): `contnet --help` imports no torch, a run composes its config once, a sweep
each job once plus its master config once (the `hydra` node that configures Hydra's sweeper, launcher and callbacks:
Hydra's multirun composes it, then each job again in the sweeper's batch check and again in the launcher; the
pre-flight check composes the master and every job as Hydra would, and the sweep runs those), Hydra's copies of its
config repository share the stored schemas, and a run or a sweep's job leaves curves.png to `contnet report` unless
asked (trainer.plot=true).
Timings are benchmarks, not tests: bench/bench_startup.py."""
from __future__ import annotations

import copy
import subprocess
import sys

import pytest

from tests.helpers.cli import cli_inprocess


FAST = ["trainer.max_steps=3", "trainer.eval_every=0", "trainer.progress=false", "model.width=8"]


def test_contnet_help_imports_neither_torch_nor_hydra():
    code = ("import sys; from contnet.cli.main import main; main(['--help']); "
            "print(sorted(m for m in ('torch', 'hydra', 'omegaconf', 'contnet.conf') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "optimizer  adam" in res.stdout and res.stdout.strip().splitlines()[-1] == "[]"


@pytest.fixture
def compositions(monkeypatch):
    """How many times Hydra composes the config (its loader's load_configuration: every compose API call, every
    composition inside Hydra's main, sweeper and launcher)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    calls = []
    load = ConfigLoaderImpl.load_configuration

    def counted(self, *a, **k):
        calls.append(1)
        return load(self, *a, **k)
    monkeypatch.setattr(ConfigLoaderImpl, "load_configuration", counted)
    return calls


def test_the_default_run_composes_its_config_once(tmp_path, compositions):
    res = cli_inprocess(["train", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)       # the default run, as is
    assert res.returncode == 0, res.stderr
    assert len(compositions) == 1                       # was 4: the pre-flight check twice, Hydra's main twice
    assert (tmp_path / "run" / ".hydra" / "hydra.yaml").is_file()


def test_a_sweep_composes_each_job_once_and_leaves_curves_to_the_report(tmp_path, compositions):
    """The master config once, then each job once (was 7 for two jobs: the check's two, Hydra's master, and per job
    the sweeper's batch check, hydra/plugins/sweeper.py `validate_batch_is_legal`, and the launcher,
    hydra/_internal/core_plugins/basic_launcher.py `launch`, both through `load_sweep_config`).  The jobs run the
    configs the check composed: each its own seed, in its own folder of the one sweep directory."""
    import json
    sweep = tmp_path / "sweep"
    res = cli_inprocess(["train", "-m", f"hydra.sweep.dir={sweep}", "seed=0,1", *FAST], tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(compositions) == 1 + 2
    assert [json.loads((sweep / str(i) / "summary.json").read_text())["seed"] for i in (0, 1)] == [0, 1]
    assert (sweep / "1" / ".hydra" / "overrides.yaml").read_text().splitlines()[0] == "- seed=1"
    assert "mode: MULTIRUN" in (sweep / "1" / ".hydra" / "hydra.yaml").read_text()
    assert not list(sweep.glob("*/curves.png")) and (sweep / "report.md").is_file()


def test_a_sweep_job_draws_its_curves_when_asked(tmp_path):
    sweep = tmp_path / "sweep"
    res = cli_inprocess(["train", "-m", f"hydra.sweep.dir={sweep}", "seed=0", "trainer.plot=true", *FAST], tmp_path)
    assert res.returncode == 0, res.stderr
    assert (sweep / "0" / "curves.png").is_file()


def test_a_run_leaves_its_curves_to_the_report_unless_asked(tmp_path, monkeypatch):
    """matplotlib's import and first figure were 0.8 CPU s of the default `contnet train`: curves.png is drawn by
    `contnet report <run dir>`, or at the end of the run with trainer.plot=true."""
    from contnet.engine import loop
    drawn = []
    monkeypatch.setattr(loop, "plot_curves", lambda *a, draw=loop.plot_curves: drawn.append(a) or draw(*a))
    run, asked = tmp_path / "run", tmp_path / "asked"
    res = cli_inprocess(["train", f"hydra.run.dir={run}", *FAST], tmp_path)
    assert res.returncode == 0, res.stderr
    assert (run / "summary.json").is_file() and not (run / "curves.png").exists() and not drawn
    rep = cli_inprocess(["report", str(run)], tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG" and "curves.png" in rep.stdout
    res = cli_inprocess(["train", f"hydra.run.dir={asked}", "trainer.plot=true", *FAST], tmp_path)
    assert res.returncode == 0, res.stderr
    assert (asked / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_hydra_copies_of_the_config_store_share_it():
    """Hydra deep-copies its config repository, ConfigStore included, for every composition and every group it
    lists (`contnet train --help`: 183 times): the stored nodes are shared, while what Hydra loads is its own copy."""
    import contnet.conf  # noqa: F401 - stores the schemas
    from hydra.core.config_store import ConfigStore
    cs = ConfigStore.instance()
    assert copy.deepcopy(cs).repo is cs.repo
    loaded = cs.load("schema/optimizer/adam.yaml").node
    assert loaded is not cs.repo["schema"]["optimizer"]["adam.yaml"].node and loaded.lr == 1e-3


def test_a_sweep_without_multirun_is_one_line_and_writes_nothing(tmp_path):
    """The run is launched from the checked config, so a sweep on a single run's line is refused here (Hydra's main
    refused it in a paragraph; running job 0 alone would hide the other values)."""
    res = cli_inprocess(["train", f"hydra.run.dir={tmp_path / 'run'}", "seed=0,1", *FAST], tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip() == "error: seed=0,1: a sweep needs -m (--multirun: one job per value); give one value " \
                                 "for a single run"
    assert not (tmp_path / "run").exists()
