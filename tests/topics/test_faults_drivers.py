"""Faults in the commands around training (issue 21): `contnet report` asked for a metric no run logged,
`contnet tune` given a preset that is not a tuning preset, bad seeds or an unknown key, `contnet reproduce --help`
and `--jobs 0`.  Each is one line naming the problem and the fix, exit 2, nothing written."""
from __future__ import annotations

import pytest

from tests.helpers import REPO
from tests.helpers.cli import BOTH_CLIS, cli_inprocess
from tests.helpers.data import write_run


def one_error_line(res, *words, code=2) -> str:
    assert res.returncode == code, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# --- contnet report ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag,value", [("--metric", "val/acc"), ("--target", "val/acc=0.9"),
                                        ("--target", "val/los=0.5")])
def test_report_on_a_metric_no_run_logged_is_refused(tmp_path, flag, value):
    runs = tmp_path / "runs"
    write_run(runs / "0", seed=0)
    write_run(runs / "1", seed=1)
    res = cli_inprocess(["report", str(runs), flag, value, "--no-plots"], tmp_path)
    key = value.split("=")[0]
    line = one_error_line(res, f"{flag} {key}", "no run logged it", "train/loss, val/loss")
    assert line.startswith("contnet report: error:") and "lr" not in line.split("logged:")[-1].split(", ")
    assert sorted(p.name for p in runs.iterdir()) == ["0", "1"]          # no report half-written


def test_report_on_a_metric_some_run_logged_still_works(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "0", seed=0, val_acc=(0.1, 0.5, 0.9))
    write_run(runs / "1", seed=1)
    res = cli_inprocess(["report", str(runs), "--metric", "val/acc", "--target", "lambda=1", "--no-plots"],
                        tmp_path)
    assert res.returncode == 2 and "--target lambda" in res.stderr     # lambda: logged by no run here
    res = cli_inprocess(["report", str(runs), "--metric", "val/acc", "--target", "val/acc=0.8", "--no-plots"],
                        tmp_path)
    assert res.returncode == 0, res.stderr
    assert (runs / "report.md").is_file()


# --- contnet tune (its other bad inputs: tests/studies/test_tune.py) -------------------------------------------------

@pytest.mark.parametrize("args,words", [
    (["experiment=digits_ae"], ["experiment=digits_ae", "no such preset", "tune_digits_ae"]),
    (["experiment=tune_digits_ae", "--seeds", "a,b"], ["--seeds a,b", "'a' is not", "e.g. --seeds 0,1,2"]),
    (["experiment=tune_digits_ae", "--seeds", "0,-1"], ["--seeds 0,-1", "'-1' is not", "≥ 0"]),
    (["experiment=tune_digits_ae", "trainer.bogus=1"], ["trainer.bogus=1", "unknown key"]),
])
@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_tune_bad_arguments_are_one_line_exit_2(tmp_path, args, words, cli):
    line = one_error_line(cli(["tune", *args, "--out", str(tmp_path / "x")], REPO), *words)
    assert line.startswith("error: ")
    assert not (tmp_path / "x").exists()


# --- contnet reproduce (the Solo study's bad rows: tests/studies/test_solo_study.py) ---------------------------------

def test_reproduce_help_is_not_cut_mid_sentence(tmp_path):
    res = cli_inprocess(["reproduce", "--help"], tmp_path, env={"COLUMNS": "200"})
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    assert "REPORT.md beside them in --out." in text
    assert "contnet reproduce --scale paper" in text              # the examples come with it


@pytest.mark.parametrize("flag,value,words", [("--jobs", "0", ["an integer ≥ 1"]),
                                              ("--jobs", "-3", ["an integer ≥ 1"]),
                                              ("--timeout", "0", ["seconds > 0"])])
def test_reproduce_jobs_below_one_or_no_timeout_is_refused(tmp_path, flag, value, words):
    res = cli_inprocess(["reproduce", "--claims", "parc", flag, value, "--dry-run", "--out", str(tmp_path / "out")],
                        tmp_path)
    one_error_line(res, f"{flag} {value}", *words)
    assert not (tmp_path / "out").exists()
