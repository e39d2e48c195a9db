"""`contnet eval <run dir>`: a saved tiny-gpt2 run is decoded and scored again from its adapter directory,
without training, and gives the numbers the run itself reported; bad input is one line and exit 2."""
from __future__ import annotations

import json

import pytest

from tests.helpers.cli import cli_inprocess, run_cli  # noqa: E402
from tests.helpers.data import e2e_dir  # noqa: E402


pytest.importorskip("transformers")
pytest.importorskip("peft")


TRAIN = ["train", "task=e2e", "model=tiny-gpt2", "trainer.max_steps=3", "trainer.batch_size=8", "task.train_size=16",
         "task.meteor=false", "task.download=false", "task.generation.max_new_tokens=8", "trainer.progress=false",
         "trainer.threads=1"]


@pytest.mark.parametrize("peft, cli", [("solo", cli_inprocess), pytest.param("solo", run_cli, marks=pytest.mark.slow),
                                      pytest.param("lora", run_cli, marks=pytest.mark.slow)])   # full: test_adapter_io
def test_eval_scores_a_saved_run_again(tmp_path, peft, cli, monkeypatch):
    """`contnet eval` in this process in the fast suite (its process: the bad-input test below), a fresh one in the
    slow suite.  In this process it also shows that decoding runs at the collector's usual pace (the caller's
    thresholds, which the command's start-up held back: engine/startup.py)."""
    import gc

    from contnet.tasks.e2e import NLGTask
    thresholds, paces, evaluate = gc.get_threshold(), [], NLGTask.evaluate
    monkeypatch.setattr(NLGTask, "evaluate", lambda *a, **k: paces.append(gc.get_threshold()) or evaluate(*a, **k))
    run = tmp_path / "run"
    data = e2e_dir(tmp_path, n_test=4, shared=False)
    done = cli_inprocess([*TRAIN, f"peft={peft}", f"task.data_dir={data}", f"hydra.run.dir={run}"],
                         tmp_path)                    # the saved run; `contnet eval` reads it in a fresh process
    assert done.returncode == 0, done.stderr[-2000:]
    assert (run / "adapter" / "adapter_config.json").exists()
    summary = json.loads((run / "summary.json").read_text())
    out = cli(["eval", str(run), "task.test_size=2"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((run / "eval" / "eval.json").read_text())
    assert result["weights"] == f"adapter ({peft})"
    m = result["metrics"]
    assert m["val/loss"] == pytest.approx(summary["final"]["val/loss"], rel=1e-6)   # the trained weights, not the base
    assert {"test/bleu", "test/nist", "test/rouge_l", "test/cider"} <= set(m)
    assert len((run / "eval" / "test_predictions.txt").read_text().splitlines()) == 2     # the override took effect
    assert json.loads((run / "summary.json").read_text()) == summary                     # the run is left as it was
    if cli is cli_inprocess:
        assert paces and set(paces) == {thresholds} and gc.get_threshold() == thresholds


def test_eval_bad_input_is_one_line_and_exit_2(tmp_path):
    out = run_cli(["eval", str(tmp_path / "nope")], tmp_path)
    assert out.returncode == 2 and "not a directory" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = cli_inprocess(["eval", str(tmp_path)], tmp_path)
    assert out.returncode == 2 and ".hydra/config.yaml" in out.stderr
    assert not (tmp_path / "eval").exists()


def test_an_override_of_a_key_added_after_the_run_was_made(tmp_path):
    """A run's .hydra/config.yaml from before task.nist existed: `contnet eval <run> task.nist=mteval` sets it (a
    field of the run's task option); a key no option has is still one line naming it."""
    from contnet.cli.eval import load_config
    from contnet.registry import ConfigError
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("task:\n  name: e2e\n  meteor: false\nmodel:\n  name: tiny-gpt2\n")
    assert load_config(tmp_path, ["task.nist=mteval"]).task.nist == "mteval"
    with pytest.raises(ConfigError, match=r"^task.nist_mode: no such key in the run's config"):
        load_config(tmp_path, ["task.nist_mode=mteval"])
