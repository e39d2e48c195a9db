"""The Solo study on the study runner (`contnet solo-study`): completed runs are skipped, a stage writes runs.jsonl +
meta.json (the rows the docs' tables are rendered from), the best screen row per method is picked."""
from __future__ import annotations

import json

import pytest

from contnet.studies import artifact, runner, solo
from tests.helpers.cli import BOTH_CLIS, assert_one_line


def write(run_dir, status="completed", val=1.0, params=10, seed=0, **final):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps({"status": status, "trainable_params": params, "seed": seed,
                                                      "wall_time_s": 5.0, "final": {"val/loss": val, **final}}))


def test_completed_runs_are_skipped_and_the_stage_keeps_its_rows(tmp_path, monkeypatch):
    trained = []

    def fake(run, root, **kw):
        trained.append(run)
        write(root / run.dir, val=1.4)
        (root / run.dir / "checkpoints").mkdir()
        return {}

    monkeypatch.setattr(runner, "run_in_process", fake)
    write(tmp_path / "screen" / "lora-lr2e-3", val=1.7)
    assert solo.main(["screen", "lora-lr2e-3", "solo-stride2-lr2e-3", "--root", str(tmp_path)]) == 0
    assert [r.dir for r in trained] == ["solo-stride2-lr2e-3"]
    assert "peft.placement=stride" in trained[0].overrides and "experiment=solo_study_cpu" in trained[0].overrides
    assert not (tmp_path / "screen" / "solo-stride2-lr2e-3" / "checkpoints").exists()   # dropped once completed
    rows = artifact.read_rows(tmp_path / "screen")
    assert [(r["run"], r["final"]["val/loss"]) for r in rows] == [("lora-lr2e-3", 1.7), ("solo-stride2-lr2e-3", 1.4)]
    assert [r["trainable_params"] for r in rows] == [10, 10]
    assert [r["arm"] for r in rows] == ["lora-lr2e-3", "solo-stride2-lr2e-3"]
    assert artifact.read_meta(tmp_path / "screen")["command"].startswith("contnet solo-study screen")
    assert solo.main(["screen", "full-lr2e-4", "--root", str(tmp_path)]) == 0          # a later row joins the rows
    assert len(artifact.read_rows(tmp_path / "screen")) == 3


def test_best_rows(tmp_path):
    screen = tmp_path / "screen"
    write(screen / "lora-lr2e-3", val=1.7)
    write(screen / "lora-lr6e-3", val=1.6)
    write(screen / "solo-first_last-lr2e-3", val=1.9)
    write(screen / "solo-stride2-lr2e-3", val=1.5)
    write(screen / "full-lr2e-4", status="diverged", val=0.1)
    assert solo.best_rows(screen) == ["solo-stride2-lr2e-3", "lora-lr6e-3"]


def test_confirm_runs_every_seed_of_the_named_rows(capsys, tmp_path):
    assert solo.main(["confirm", "lora-lr6e-3", "--seeds", "0,1", "--steps", "40", "--dry-run",
                      "--root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "seed=1" in lines[1] and "trainer.max_steps=40" in lines[0]
    assert "task.generate_splits=[test]" in lines[0] and not tmp_path.joinpath("confirm").exists()


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_unknown_rows_are_one_line_exit_2(cli, tmp_path):
    res = cli(["solo-study", "screen", "no-such-row", "--root", str(tmp_path / "study")], tmp_path)
    assert_one_line(res, "unknown study rows", "choose from")
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_jobs_below_one_is_one_line_exit_2(cli, tmp_path):
    res = cli(["solo-study", "screen", "--jobs", "0", "--root", str(tmp_path / "study")], tmp_path)
    assert_one_line(res, "--jobs 0", "an integer ≥ 1")
    assert not (tmp_path / "study").exists()


def test_jobs_run_each_missing_run_as_its_own_process(tmp_path, monkeypatch):
    launched = []

    def fake(run, root, **kw):
        launched.append(run.dir)
        write(root / run.dir, val=1.2)
        return {"status": "completed"}

    monkeypatch.setattr(runner, "run_subprocess", fake)
    write(tmp_path / "screen" / "lora-lr2e-3", val=1.7)
    names = ["lora-lr2e-3", "lora-lr6e-3", "full-lr2e-4"]
    assert solo.main(["screen", *names, "--jobs", "2", "--root", str(tmp_path)]) == 0
    assert sorted(launched) == ["full-lr2e-4", "lora-lr6e-3"]
    assert len(artifact.read_rows(tmp_path / "screen")) == 3
