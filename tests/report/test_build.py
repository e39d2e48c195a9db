"""`contnet report` on synthetic run directories with known numbers."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from contnet.report import make_report, parse_target
from contnet.report.grouping import make_labels
from contnet.report.runs import discover_run_dirs
from contnet.report.stats import lower_is_better, mean_std
from tests.helpers.data import write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def sweep(tmp_path: Path) -> Path:
    """Two groups of two seeds with known values, plus one run of every other status."""
    root = tmp_path / "multirun" / "2026-11-27" / "12-00-00"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    write_run(root / "0", optimizer="adam", seed=0, val_loss=(1.0, 0.5, 0.2), step_times=(0.0, 1.0, 2.0),
              val_acc=(0.1, 0.8, 0.9), lam=(0.0, 0.5, 1.0))
    write_run(root / "1", optimizer="adam", seed=1, val_loss=(1.0, 0.6, 0.4), step_times=(0.0, 2.0, 4.0),
              val_acc=(0.1, 0.7, 0.8), lam=(0.0, 0.5, 1.0), data_dir="/elsewhere")
    write_run(root / "2", optimizer="rmsprop", seed=0, val_loss=(1.0, 0.8, 0.5), step_times=(0.0, 1.0, 2.0))
    write_run(root / "3", optimizer="rmsprop", seed=1, val_loss=(1.0, 0.9, 0.7), step_times=(0.0, 1.0, 2.0))
    write_run(root / "4", optimizer="rmsprop", seed=2, status="diverged", val_loss=(1.0, float("nan"), float("nan")))
    write_run(root / "5", optimizer="rmsprop", seed=3, status="failed", val_loss=(1.0, 0.95, 0.9))
    write_run(root / "6", optimizer="rmsprop", seed=4, status="interrupted", val_loss=(1.0, 0.55, 0.55))
    write_run(root / "7", optimizer="rmsprop", seed=5, status=None, val_loss=(1.0, 0.99, 0.98), torn_line=True)
    (root / ".submitit").mkdir()  # launcher leftovers must not be mistaken for runs
    return root


# ---------------------------------------------------------------- units

def test_mean_std_is_sample_std_and_ignores_non_finite():
    mean, std, n = mean_std([0.2, 0.4, float("nan"), None])
    assert n == 2 and mean == pytest.approx(0.3) and std == pytest.approx(math.sqrt(0.02))
    assert math.isnan(mean_std([1.0])[1]) and mean_std([])[2] == 0


def test_metric_direction():
    assert lower_is_better("val/loss") and lower_is_better("train/full_loss") and lower_is_better("test/ppl")
    assert not lower_is_better("val/acc") and not lower_is_better("test/bleu")


def test_parse_target():
    t = parse_target("train/loss=0.05")
    assert (t.key, t.value, t.lower_is_better) == ("train/loss", 0.05, True)
    assert parse_target("val/acc=0.9").reached(0.95) and not parse_target("val/acc=0.9").reached(0.8)
    for bad in ("train/loss", "=1", "val/acc=high"):
        with pytest.raises(ValueError):
            parse_target(bad)


def test_labels_show_only_what_differs():
    adam = {"optimizer.name": "adam", "optimizer.betas": (0.9, 0.999), "model.name": "mlp", "task.name": "digits"}
    rms = {"optimizer.name": "rmsprop", "optimizer.alpha": 0.99, "model.name": "mlp", "task.name": "digits"}
    labels = make_labels([{**adam, "optimizer.lr": 0.1}, {**adam, "optimizer.lr": 0.01},
                          {**rms, "optimizer.lr": 0.01}])
    # betas/alpha differ only because the optimizer changed; lr varies within adam
    assert labels == ["optimizer=adam optimizer.lr=0.1", "optimizer=adam optimizer.lr=0.01",
                      "optimizer=rmsprop optimizer.lr=0.01"]
    assert make_labels([adam]) == ["task=digits model=mlp optimizer=adam"]


# ---------------------------------------------------------------- aggregation

def test_discovery_skips_launcher_folders_and_sweep_root(sweep: Path):
    dirs = discover_run_dirs([sweep])
    assert [d.name for d in dirs] == [str(i) for i in range(8)]


def test_groups_stats_and_counts_are_exact(sweep: Path, tmp_path: Path):
    report = make_report([sweep], out_dir=tmp_path / "out", plots=False, quiet=True)
    by_label = {s.group.label: s for s in report.stats}
    assert set(by_label) == {"optimizer=adam", "optimizer=rmsprop"}  # seed/data_dir/logger ignored
    adam, rms = by_label["optimizer=adam"], by_label["optimizer=rmsprop"]
    assert adam.counts == {"completed": 2, "diverged": 0, "failed": 0, "interrupted": 0, "incomplete": 0}
    assert rms.counts == {"completed": 2, "diverged": 1, "failed": 1, "interrupted": 1, "incomplete": 1}
    mean, std, n = adam.final["val/loss"]
    assert (n, mean, std) == (2, pytest.approx(0.3), pytest.approx(math.sqrt(0.02)))
    mean, std, n = rms.final["val/loss"]  # completed runs only: 0.5 and 0.7
    assert (n, mean, std) == (2, pytest.approx(0.6), pytest.approx(math.sqrt(0.02)))
    assert adam.best["val/acc"][:2] == (pytest.approx(0.85), pytest.approx(math.sqrt(0.005)))  # from curves
    assert adam.wall_time_s[:2] == (pytest.approx(3.5), pytest.approx(math.sqrt(2)))
    assert report.metrics[:2] == ["val/loss", "val/acc"]


def test_default_target_is_worst_group_mean(sweep: Path, tmp_path: Path):
    report = make_report([sweep], out_dir=tmp_path, plots=False, quiet=True)
    (target,) = report.targets
    assert (target.key, target.value, target.source) == ("val/loss", pytest.approx(0.6), "default")
    adam, rms = report.stats
    hit = adam.to_target["val/loss"]
    assert (hit["reached"], hit["runs"]) == (2, 2)
    assert hit["steps"][:2] == (10.0, 0.0)
    assert hit["time_s"][:2] == (pytest.approx(1.5), pytest.approx(math.sqrt(0.5)))
    hit = rms.to_target["val/loss"]
    # completed seed 0 at step 20 and the interrupted run at step 10 reached 0.6; the rest missed
    assert (hit["reached"], hit["runs"]) == (2, 6)
    assert hit["steps"][:2] == (pytest.approx(15.0), pytest.approx(math.sqrt(50)))


def test_user_target_and_misses(sweep: Path, tmp_path: Path):
    report = make_report([sweep], out_dir=tmp_path, targets=[parse_target("val/acc=0.85")],
                         metrics=["val/acc"], plots=False, quiet=True)
    adam, rms = report.stats
    assert adam.to_target["val/acc"]["reached"] == 1 and adam.to_target["val/acc"]["steps"][0] == 20
    assert rms.to_target["val/acc"]["reached"] == 0
    md = (tmp_path / "report.md").read_text()
    assert "DNF" in md and "val/acc ≥ 0.85" in md and "given with --target" in md


def test_csv_has_exact_numbers(sweep: Path, tmp_path: Path):
    make_report([sweep], out_dir=tmp_path, plots=False, quiet=True)
    rows = {r["group"]: r for r in csv.DictReader(open(tmp_path / "report.csv"))}
    assert set(rows) == {"optimizer=adam", "optimizer=rmsprop"}
    adam, rms = rows["optimizer=adam"], rows["optimizer=rmsprop"]
    assert adam["optimizer"] == "adam" and rms["runs"] == "6"
    assert (rms["completed"], rms["diverged"], rms["failed"], rms["interrupted"], rms["incomplete"]) == \
        ("2", "1", "1", "1", "1")
    assert float(adam["final/val/loss/mean"]) == pytest.approx(0.3)
    assert float(adam["final/val/loss/std"]) == pytest.approx(math.sqrt(0.02))
    assert float(rms["target/val/loss"]) == pytest.approx(0.6) and rms["target/val/loss/reached"] == "2"
    assert rms["final/val/acc/mean"] == ""  # rmsprop runs never logged accuracy
    runs = list(csv.DictReader(open(tmp_path / "runs.csv")))
    assert len(runs) == 8 and sorted(r["status"] for r in runs).count("incomplete") == 1


def test_plots_are_png_files(sweep: Path, tmp_path: Path):
    report = make_report([sweep], out_dir=tmp_path, quiet=True)
    names = {p.name for p in report.files if p.suffix == ".png"}
    assert {"loss_vs_step.png", "loss_vs_time.png", "acc_vs_step.png", "lambda_vs_step.png"} <= names
    for name in names:
        data = (tmp_path / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000
    assert "![loss_vs_step](loss_vs_step.png)" in (tmp_path / "report.md").read_text()


def test_no_lambda_plot_without_lambda(tmp_path: Path):
    write_run(tmp_path / "runs" / "a", seed=0)
    write_run(tmp_path / "runs" / "b", seed=1)
    report = make_report([tmp_path / "runs"], quiet=True)  # --out defaults to the first dir
    names = {p.name for p in report.files}
    assert "lambda_vs_step.png" not in names and "loss_vs_step.png" in names
    assert (tmp_path / "runs" / "report.md").is_file() and len(report.groups) == 1


def test_copied_runs_without_hydra_folder(tmp_path: Path):
    for i, opt in enumerate(["adam", "adam", "sgd"]):
        write_run(tmp_path / "copy" / f"r{i}", optimizer=opt, seed=i, hydra_dir=False)
    report = make_report([tmp_path / "copy"], plots=False, quiet=True)
    assert [g.label for g in report.groups] == ["optimizer=adam", "optimizer=sgd"]
    assert [len(g.runs) for g in report.groups] == [2, 1]


# ---------------------------------------------------------------- CLI

def test_cli_writes_report_and_prints_table(sweep: Path, tmp_path: Path, capsys):
    from contnet.cli.report import main

    out = tmp_path / "elsewhere"
    assert main([str(sweep), "--out", str(out), "--target", "val/loss=0.5", "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert "optimizer=rmsprop" in printed and "val/loss ≤ 0.5" in printed
    assert (out / "report.md").is_file() and (out / "report.csv").is_file()
    assert not (sweep / "report.md").exists()


@pytest.mark.parametrize("make_args, message", [
    (lambda tmp: [str(tmp / "missing")], "no such directory"),
    (lambda tmp: [str(tmp)], "no run directories"),
    (lambda tmp: [str(tmp), "--target", "val/loss"], "KEY=VALUE"),
])
def test_cli_errors_exit_2_with_one_line(tmp_path: Path, capsys, make_args, message):
    from contnet.cli.report import main

    assert main(make_args(tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("contnet report: error:")


def test_broken_files_are_counted_not_fatal(tmp_path: Path):
    run = write_run(tmp_path / "runs" / "0", seed=0)
    (run / "summary.json").write_text('{"status": "compl')  # torn write
    write_run(tmp_path / "runs" / "1", seed=1)
    report = make_report([run], out_dir=tmp_path / "single", plots=False, quiet=True)  # a run dir itself
    assert [r.status for r in report.runs] == ["incomplete"]
    report = make_report([tmp_path / "runs"], plots=False, quiet=True)
    (stats,) = report.stats
    assert stats.counts["incomplete"] == 1 and stats.final["val/loss"][2] == 1


def test_console_entry_point_exit_code(tmp_path: Path):
    from tests.helpers.cli import run_cli

    res = run_cli(["report", str(tmp_path / "nope")], cwd=tmp_path, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"contnet report: error: no such directory: {tmp_path / 'nope'} "
        "(give a run or multirun directory, e.g. outputs/multirun/<date>/<time>)"]


def test_runs_that_differ_only_in_switches_that_change_no_number_are_one_group(tmp_path: Path):
    """A single run made with trainer.plot=auto and a sweep job made with trainer.plot=false (or another progress
    setting) are the same experiment: one group; a key that changes numbers still splits."""
    import yaml

    from contnet.report.grouping import group_runs
    from contnet.report.runs import load_runs
    for i, (plot, progress, lr) in enumerate([("auto", True, 1e-3), (False, False, 1e-3), ("auto", True, 1e-2)]):
        run = write_run(tmp_path / str(i), seed=i, lr=lr)
        cfg_path = run / ".hydra" / "config.yaml"
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["trainer"].update(plot=plot, progress=progress)
        cfg_path.write_text(yaml.safe_dump(cfg))
    groups = group_runs(load_runs([tmp_path]))
    assert sorted(len(g.runs) for g in groups) == [1, 2]
