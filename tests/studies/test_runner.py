"""The study runner (contnet/studies/runner.py): the same numbers alone or in a study, a rerun does only what is
missing, a changed run starts over, a signal stops the study; and the engine's evaluation hook that a tuner's
pruner uses (a pruned run ends with status "pruned", its checkpoint and records as after a stop)."""
from __future__ import annotations

import json

import pytest

from contnet.studies import artifact, runner
from tests.helpers.runs import curves

TINY = ["task=digits_ae", "trainer.max_steps=12", "trainer.eval_every=4", "trainer.progress=false",
        "trainer.threads=1"]


def test_a_run_in_the_study_gives_the_numbers_of_contnet_train_in_a_fresh_process(tmp_path):
    """Same numbers alone or in a study: the in-process run and `contnet train` in its own process (the runner's
    subprocess launcher) write the same metrics.jsonl records, wall-clock fields aside.  `here` runs second in this
    process, its config set on the base that `first` composed (runner.compose_run)."""
    first = runner.Run("first", [*TINY, "optimizer.lr=0.01"], seed=4)
    here = runner.Run("here", TINY, seed=3)
    there = runner.Run("there", TINY, seed=3)
    rows = runner.execute([first, here], tmp_path, quiet=True)
    runner.execute([there], tmp_path, do=runner.run_subprocess)
    assert rows[1]["status"] == "completed" and runner.status(tmp_path / "there") == "completed"
    assert curves(tmp_path / "first") != curves(tmp_path / "here")
    assert curves(tmp_path / "here") == curves(tmp_path / "there")
    assert len(curves(tmp_path / "here")) > 12                  # every step and every evaluation


def test_a_rerun_does_only_what_is_missing_and_a_changed_run_starts_over(tmp_path):
    runs = [runner.Run("a", TINY, seed=0, arm="x"), runner.Run("b", TINY, seed=1, arm="x")]
    runner.execute(runs[:1], tmp_path, quiet=True)
    made = []

    def do(run, root, **kw):
        made.append(run.dir)
        return runner.run_in_process(run, root, **kw)
    rows = runner.execute(runs, tmp_path, do=do, quiet=True)
    assert made == ["b"] and [r["status"] for r in rows] == ["completed", "completed"]
    assert [r["run"] for r in rows] == ["a", "b"] and rows[1]["seed"] == 1 and rows[1]["arm"] == "x"
    changed = runner.Run("a", [*TINY, "optimizer.lr=0.002"], seed=0)
    assert not runner.forget_if_changed(runs[1], tmp_path)      # as planned: kept
    assert runner.forget_if_changed(changed, tmp_path) and not (tmp_path / "a").exists()
    (tmp_path / "b" / "summary.json").write_text(json.dumps({"status": "failed"}))
    made.clear()
    runner.execute(runs, tmp_path, do=do, quiet=True)            # a failed run is made again, a missing one too
    assert made == ["a", "b"]


def test_a_study_leaves_the_artifact(tmp_path):
    env = artifact.environment()
    runs = [runner.Run("r", TINY, seed=0, arm="adam", extra={"kind": "final"})]
    artifact.write(tmp_path, runner.execute(runs, tmp_path, quiet=True), "contnet tune x", env, 1.5, workers=1)
    [row] = artifact.read_rows(tmp_path)
    assert row["run"] == "r" and row["kind"] == "final" and row["steps"] == 12 and "val/loss" in row["final"]
    meta = artifact.read_meta(tmp_path)
    assert meta["command"] == "contnet tune x" and meta["workers"] == 1 and meta["wall_s"] == 1.5
    # a rerun that did no work leaves the evidence of the invocation that made the runs, meta.json included
    again = runner.execute(runs, tmp_path, quiet=True)
    assert not artifact.write(tmp_path, again, "contnet tune x --again", artifact.environment(), 0.1)
    assert artifact.read_meta(tmp_path) == meta
    # new rows: both files are written again
    assert artifact.write(tmp_path, [{**row, "seed": 1}], "contnet tune y", env, 2.0)
    assert artifact.read_meta(tmp_path)["command"] == "contnet tune y" and artifact.read_rows(tmp_path)[0]["seed"] == 1


def test_a_run_stopped_by_a_signal_stops_the_study():
    from contnet.engine.signals import Interrupted
    runner.stop_if_interrupted({"status": "completed"})
    with pytest.raises(Interrupted) as e:
        runner.stop_if_interrupted({"status": "interrupted", "signal": 15})
    assert e.value.signum == 15


def test_the_evaluation_hook_prunes_a_run_at_an_evaluation(tmp_path):
    seen = []

    def on_eval(record):
        seen.append(record["step"])
        return record["step"] >= 8
    summary = runner.run_in_process(runner.Run("p", TINY, seed=0), tmp_path, quiet=True, on_eval=on_eval)
    assert seen == [4, 8] and summary["status"] == "pruned" and summary["steps"] == 8
    assert runner.is_done(tmp_path / "p") and (tmp_path / "p" / "checkpoints" / "last.pt").is_file()
    records = curves(tmp_path / "p")
    assert max(r["step"] for r in records) == 8 and not any("test/loss" in r for r in records)
    assert json.loads((tmp_path / "p" / "summary.json").read_text())["status"] == "pruned"


@pytest.mark.parametrize("tail", [["optimizer.lr=0.003", "optimizer.delta_l_min=0.05", "seed=7"],
                                  ["seed=7", "trainer.resume=auto", "model.width=16"], ["optimizer=adam", "seed=1"]])
def test_a_run_composed_from_a_shared_base_is_the_config_compose_gives(tail):
    from omegaconf import OmegaConf

    from contnet.conf import compose
    head = ["experiment=tune_digits_ae", "optimizer=cadam"]
    runner.compose_run([*head, "seed=1"])                       # the base is composed (and kept) here
    assert OmegaConf.to_yaml(runner.compose_run([*head, *tail])) == OmegaConf.to_yaml(compose([*head, *tail]))
