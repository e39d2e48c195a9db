"""The docs' studies (contnet/studies/docs_studies.py) at a tiny size: the artifact a table is rendered from, a
rerun that does no work, and a bad override refused before anything is written."""
from __future__ import annotations

import subprocess
import sys

import pytest

from contnet.studies import artifact, docs_studies, runner
from tests.helpers.cli import assert_one_line

TINY = ["--seeds", "1", "--set", "trainer.max_steps=2", "--set", "trainer.eval_every=0"]


@pytest.fixture
def seq2d(tmp_path_factory, monkeypatch):
    """The study on digits only (mnist1d's data takes 4 s to make), 1 seed, 2 steps."""
    monkeypatch.setattr(docs_studies, "SEQ2D_TASKS", ("digits",))
    tmp = tmp_path_factory.mktemp("seq2d")
    args = ["seq2d_skips", *TINY, "--runs", str(tmp / "runs"), "--results", str(tmp / "results")]
    assert docs_studies.main(args) == 0
    return tmp, args


def test_seq2d_rows_carry_the_table(seq2d):
    tmp, _ = seq2d
    rows = artifact.read_rows(tmp / "results" / "seq2d_skips")
    assert len(rows) == len(docs_studies.SEQ2D_ARMS)
    assert {r["status"] for r in rows} == {"completed"}
    assert all(isinstance(r["trainable_params"], int) and r["steps"] == 2 for r in rows)
    assert all((tmp / "runs" / "seq2d_skips" / r["run"] / "summary.json").is_file() for r in rows)
    by = {(r["choices"]["task"], r["arm"]): r for r in rows}
    # the table's first claim: seq2d(mlp) is the MLP, number for number; the other arms are other networks
    assert by["digits", "seq2d(mlp)"]["final"] == by["digits", "mlp"]["final"]
    assert by["digits", "seq2d(dense)"]["final"] != by["digits", "mlp"]["final"]
    assert by["digits", "seq2d(dense)"]["trainable_params"] != by["digits", "mlp"]["trainable_params"]
    meta = artifact.read_meta(tmp / "results" / "seq2d_skips")
    assert meta["study"] == "seq2d_skips" and meta["seeds"] == [0] and meta["extra_overrides"] == TINY[3::2]


def test_seq2d_rerun_does_no_work(seq2d, monkeypatch):
    tmp, args = seq2d
    before = (tmp / "results" / "seq2d_skips" / artifact.RUNS).read_text()

    def train(*a, **k):
        raise AssertionError("a finished run ran again")
    monkeypatch.setattr(runner, "run_in_process", train)
    assert docs_studies.main(args) == 0
    assert (tmp / "results" / "seq2d_skips" / artifact.RUNS).read_text() == before


def test_bad_override_is_one_line_and_writes_nothing(tmp_path):
    res = subprocess.run([sys.executable, "-m", "contnet.studies.docs_studies", "seq2d_skips", "--set",
                          "trainer.no_such_key=1", "--runs", "runs", "--results", "results"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert_one_line(res, "no_such_key")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow          # 6 s: three arms tuned and rerun
def test_predictor_copies_each_tuning_study_to_docs(tmp_path, monkeypatch):
    """The tuned study through `contnet tune` at a tiny budget (digits_ae only): its rows, report and meta land in
    <results>/predictor/<task>/, meta naming this command and the run folder, no machine path."""
    monkeypatch.setattr(docs_studies, "TUNED", {"predictor": ("tune_ratio_mode", ("digits_ae",))})
    monkeypatch.chdir(tmp_path)
    args = ["predictor", "--seeds", "1", "--trials", "1", "--set", "trainer.max_steps=4", "--set", "trainer.eval_every=2"]
    assert docs_studies.main(args) == 0
    dest = tmp_path / "docs" / "results" / "predictor" / "digits_ae"
    rows = artifact.read_rows(dest)
    assert {r["arm"] for r in rows} == {"intended", "frozen", "nosecant"}
    assert {r["kind"] for r in rows} == {"trial", "final"}
    assert all((tmp_path / "outputs/studies/predictor/digits_ae" / r["run"] / "summary.json").is_file() for r in rows)
    meta = artifact.read_meta(dest)
    assert meta["runs_dir"] == "outputs/studies/predictor/digits_ae"
    assert meta["command"].endswith(" ".join(args)) and "--seeds 0" in meta["tune_command"]
    assert str(tmp_path) not in "".join(p.read_text() for p in dest.iterdir())
    assert (dest / "report.md").is_file()
