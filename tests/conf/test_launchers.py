"""Launcher presets and the report callback: they compose, and sweeps through them produce run dirs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers.cli import run_cli
from tests.helpers.config import compose_fresh


pytest.importorskip("hydra_plugins.hydra_joblib_launcher")

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"


def compose_hydra(overrides: list[str]):
    with warnings.catch_warnings():
        # a YAML shadowing a plugin's config would warn (automatic schema matching)
        warnings.simplefilter("error")
        return compose_fresh(overrides, hydra_config=True)     # composed here: a warning is the failure


@pytest.mark.parametrize("name, target, expected", [
    ("joblib_local", JOBLIB, {"n_jobs": 2, "prefer": "processes"}),
    ("joblib", JOBLIB, {"n_jobs": -1}),  # the plugin's own config is not shadowed
    ("slurm", SLURM, {"gpus_per_node": 1, "timeout_min": 240, "max_num_timeout": 3, "partition": None}),
    ("slurm_local", LOCAL, {"cpus_per_task": 1, "gpus_per_node": 0}),
    ("submitit_local", LOCAL, {"timeout_min": 60}),
    ("submitit_slurm", SLURM, {"array_parallelism": 256}),
])
def test_launcher_presets_compose(name, target, expected):
    if "submitit" in target:
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    launcher = compose_hydra([f"hydra/launcher={name}"]).hydra.launcher
    assert launcher._target_ == target
    for key, value in expected.items():
        assert launcher[key] == value, key


def test_slurm_preset_takes_overrides():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_hydra(["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                         "hydra.launcher.setup=[module load cuda]"])
    assert cfg.hydra.launcher.partition == "gpu" and list(cfg.hydra.launcher.setup) == ["module load cuda"]


def test_report_callback_composes_and_instantiates(tmp_path):
    from hydra.utils import instantiate

    from contnet.report.callback import ReportCallback

    cfg = compose_hydra(["hydra/callbacks=report", "hydra.callbacks.report.targets=['val/acc=0.9']"])
    callback = instantiate(cfg.hydra.callbacks.report)
    assert isinstance(callback, ReportCallback) and callback.targets == ["val/acc=0.9"]
    default = compose_hydra([]).hydra.callbacks.report        # on by default (conf/config.yaml) ...
    assert default.enabled is True
    assert compose_hydra(["hydra.callbacks.report.enabled=false"]).hydra.callbacks.report.enabled is False  # ... and can be switched off


def test_callback_never_fails_the_sweep(tmp_path, caplog):
    from contnet.report.callback import ReportCallback

    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})  # a sweep with no runs
    callback = ReportCallback()
    callback.on_multirun_start(cfg)
    with caplog.at_level(logging.WARNING):
        callback.on_multirun_end(cfg)
    assert "contnet report failed" in caplog.text and not (tmp_path / "report.md").exists()


TINY_APP = textwrap.dedent('''
    """A Hydra app that writes the run-directory contract without training anything."""
    import json
    import hydra
    from hydra.core.hydra_config import HydraConfig

    @hydra.main(version_base="1.3", config_path="conf", config_name="tiny")
    def main(cfg):
        out = HydraConfig.get().runtime.output_dir
        loss = [1.0, cfg.lr * 10, cfg.lr * (5 + cfg.seed)]
        with open(f"{out}/metrics.jsonl", "w") as fh:
            for i, value in enumerate(loss):
                fh.write(json.dumps({"step": 10 * i, "train/loss": value, "time_s": float(i)}) + "\\n")
        summary = {"status": "completed", "steps": 20, "wall_time_s": 2.0, "seed": cfg.seed,
                   "final": {"train/loss": loss[-1]}, "best": {"train/loss": min(loss)}}
        with open(f"{out}/summary.json", "w") as fh:
            json.dump(summary, fh)

    if __name__ == "__main__":
        main()
''')


def test_callback_reports_at_the_end_of_a_real_multirun(tmp_path):
    """Basic launcher, tiny app: checks the callback wiring, not the training engine."""
    import contnet.conf

    conf = tmp_path / "conf"
    conf.mkdir()
    conf_dir = Path(contnet.conf.__file__).parent
    (conf / "tiny.yaml").write_text(f"lr: 0.01\nseed: 0\nhydra:\n  searchpath: [file://{conf_dir}]\n")
    (tmp_path / "app.py").write_text(TINY_APP)
    sweep = tmp_path / "sweep"
    res = subprocess.run([sys.executable, "app.py", "-m", "lr=0.01,0.02", "seed=0,1", "hydra/callbacks=report",
                          f"hydra.sweep.dir={sweep}"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (sweep / "report.md").is_file() and (sweep / "loss_vs_step.png").is_file()
    text = (sweep / "report.csv").read_text()
    assert "lr=0.01" in text and "lr=0.02" in text
    assert "4 runs, 2 groups" in res.stdout


def _assert_two_completed_runs(sweep: Path):
    summaries = sorted(sweep.glob("*/summary.json"))
    assert len(summaries) == 2, list(sweep.iterdir())
    for path in summaries:
        summary = json.loads(path.read_text())
        assert summary["status"] == "completed" and summary["steps"] == 20
    assert {json.loads(p.read_text())["seed"] for p in summaries} == {0, 1}


@pytest.mark.slow     # fast: the presets compose (above) and the report callback ends a real multirun (above)
@pytest.mark.parametrize("launcher", ["slurm_local", "joblib_local"])
def test_two_job_sweep_through_launcher(tmp_path, launcher):
    """`contnet train -m` through a launcher preset (each job a process of the launcher's), then the report
    callback on the sweep."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    start = time.perf_counter()
    res = run_cli(["train", "-m", f"hydra/launcher={launcher}", "hydra/callbacks=report", "seed=0,1",
                   "trainer.max_steps=20", "trainer.eval_every=10", f"hydra.sweep.dir={sweep}"],
                  cwd=tmp_path, timeout=300, env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    _assert_two_completed_runs(sweep)
    if launcher == "slurm_local":
        assert (sweep / ".submitit").is_dir()  # really went through submitit
    rows = (sweep / "report.csv").read_text().splitlines()
    assert len(rows) == 2 and ",2,2,0,0,0,0," in rows[1]  # one group: 2 runs, 2 completed
    print(f"{launcher} sweep of 2 jobs: {time.perf_counter() - start:.1f} s")
