"""Data-to-text inputs through the CLI (in this process in the fast suite, through a real process too in the slow
one): bad files are one line, substitutes (generated lines, training on
valid, scores without Java) are errors outside smoke scale and are marked in summary.json, the final table
and `contnet report` where they are allowed; `task.generate_splits=[]` turns decoding off."""
from __future__ import annotations

import csv
import json

import pytest

from tests.helpers.cli import BOTH_CLIS, assert_one_line, cli_inprocess, run_cli  # noqa: E402
from tests.helpers.data import e2e_dir  # noqa: E402


pytest.importorskip("transformers")


TINY = ["task=e2e", "model=tiny-gpt2", "task.download=false", "trainer.max_steps=2", "trainer.batch_size=8",
        "trainer.eval_every=0", "task.generation.max_new_tokens=8"]


def train(tmp_path, *args, env=None, cli=run_cli):
    """The real CLI by default; cli=cli_inprocess for the fast suite's variant of a test."""
    return cli(["train", f"hydra.run.dir={tmp_path / 'run'}", *TINY, *args], tmp_path, env=env)


# --- 3. empty or malformed E2E files ----------------------------------------------------------------------

@pytest.mark.parametrize("name,content,words", [
    ("valid.txt", b"", ["valid.txt", "no examples"]),
    pytest.param("valid.txt", b"", ["valid.txt", "no examples"], marks=pytest.mark.slow, id="process"),
    ("test.txt", b"name : A | food : B||A serves B.\nno separator here\n", ["test.txt:2", "MR||reference"]),
    ("test.txt", bytes(range(256)) * 4, ["test.txt", "not UTF-8"]),
    ("devset.csv", b"", ["devset.csv", "empty file"]),
    ("devset.csv", b"meaning,text\nname[A],A.\n", ["devset.csv", "columns 'mr' and 'ref'", "['meaning', 'text']"]),
    ("devset.csv", b"mr,ref\n", ["devset.csv", "no examples"]),
])
def test_bad_e2e_files_are_one_line_naming_the_file(tmp_path, request, name, content, words):
    d = e2e_dir(tmp_path)
    if name.endswith(".csv"):                     # the CSV is read when there is no txt for that split
        (d / "valid.txt").unlink()
    (d / name).write_bytes(content)
    cli = run_cli if request.node.callspec.id == "process" else cli_inprocess      # a real process: slow suite
    assert_one_line(train(tmp_path, f"task.data_dir={d}", cli=cli), str(d / name.split(":")[0]), *words)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_bad_webnlg_json_is_one_line(tmp_path, cli):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "dev.json").write_text('{"entries": [', encoding="utf-8")
    (tmp_path / "w" / "test.json").write_text('{"entries": []}', encoding="utf-8")
    res = cli(["train", f"hydra.run.dir={tmp_path / 'run'}", "task=webnlg", "model=tiny-gpt2",
               f"task.data_dir={tmp_path / 'w'}"], tmp_path)
    assert_one_line(res, str(tmp_path / "w" / "dev.json"), "not valid JSON")


# --- 7. no silent substitutes --------------------------------------------------------------------------------

@pytest.mark.parametrize("task,expected,cli", [
    ("e2e", "valid.txt", cli_inprocess), pytest.param("e2e", "valid.txt", run_cli, marks=pytest.mark.slow),
    ("webnlg", "dev.json", cli_inprocess), ("dart", "dev.json", cli_inprocess)])
def test_missing_data_outside_smoke_scale_is_an_error_naming_the_path(tmp_path, task, expected, cli):
    empty = tmp_path / "nothing"
    res = cli(["train", f"hydra.run.dir={tmp_path / 'run'}", f"task={task}", "model=tiny-gpt2",
                   "task.scale=cpu", "task.download=false", f"task.data_dir={empty}"], tmp_path)
    line = assert_one_line(res, "not found", str(empty), "task.data_dir")
    assert expected in line
    if task == "e2e":
        assert "task.synthetic=true" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_no_train_file_outside_smoke_scale_is_an_error_not_training_on_valid(tmp_path, cli):
    d = e2e_dir(tmp_path)                                     # valid + test, no train
    line = assert_one_line(train(tmp_path, f"task.data_dir={d}", "task.scale=cpu", cli=cli), str(d / "train.txt"),
                           "task.train_split=valid")
    assert "not found" in line


def test_e2e_recipe_does_not_fall_back_to_valid(tmp_path):
    d = e2e_dir(tmp_path)
    res = cli_inprocess(["train", f"hydra.run.dir={tmp_path / 'run'}", "experiment=e2e_recipe", "model=tiny-gpt2",
                         "task.download=false", f"task.data_dir={d}"], tmp_path)   # the path's process: the test above
    assert_one_line(res, "train.txt", "task.train_split=valid")


def _no_java_env(tmp_path):
    """A PATH without java (java_available() looks it up on each call)."""
    (tmp_path / "bin").mkdir(exist_ok=True)
    return {"PATH": str(tmp_path / "bin")}


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_smoke_substitutes_are_marked_in_summary_table_and_report(tmp_path, monkeypatch, cli):
    if cli is cli_inprocess:          # this process may hold a java found by an earlier test: no java, said outright
        from contnet.metrics import coco
        from contnet.tasks import e2e
        monkeypatch.setattr(coco, "java_available", lambda: False)
        monkeypatch.setattr(e2e, "java_available", lambda: False)
    res = train(tmp_path, f"task.data_dir={tmp_path / 'nothing'}", env=_no_java_env(tmp_path), cli=cli)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data"] == "synthetic" and summary["train_split"] == "train"
    assert summary["scores"] == "approximate"               # no java: ROUGE-L/CIDEr from the Python tokenizer
    assert "test/rouge_l" in summary["final"] and "test/meteor" not in summary["final"]
    assert "ROUGE-L/CIDEr are approximate" in (tmp_path / "run" / "contnet.log").read_text()   # the log says it
    assert "data: synthetic" in res.stdout and "scores: approximate" in res.stdout     # the final table
    rep = cli_inprocess(["report", str(tmp_path / "run"), "--no-plots"], tmp_path)
    assert rep.returncode == 0, rep.stderr[-2000:]
    assert "data: synthetic" in rep.stdout and "scores: approximate" in rep.stdout
    md = (tmp_path / "run" / "report.md").read_text()
    assert "completed (data: synthetic, scores: approximate)" in md
    runs = list(csv.DictReader(open(tmp_path / "run" / "runs.csv", encoding="utf-8")))
    assert runs[0]["notes"] == "data: synthetic; scores: approximate"


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_train_on_valid_is_marked_and_empty_generate_splits_decodes_nothing(tmp_path, cli):
    d = e2e_dir(tmp_path)
    res = train(tmp_path, f"task.data_dir={d}", "task.generate_splits=[]", env=_no_java_env(tmp_path), cli=cli)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["train_split"] == "valid" and summary["data"] == str(d)
    assert "scores" not in summary                           # nothing decoded, nothing scored
    assert not any(k.endswith(("bleu", "rouge_l", "cider")) for k in summary["final"])
    assert "test/loss" in summary["final"]
    assert not (tmp_path / "run" / "test_predictions.txt").exists()
    assert "train_split: valid" in res.stdout


# --- 5. contnet report over corrupt metrics ---------------------------------------------------------------

def test_report_warns_file_and_line_for_corrupt_metrics_and_goes_on(tmp_path):
    good = {"status": "completed", "steps": 3, "seed": 0, "task": "digits", "model": "mlp", "optimizer": "adam",
            "final": {"val/loss": 0.5}, "best": {"val/loss": 0.5}, "wall_time_s": 1.0}
    junk = bytes(range(128, 256)) * 8 + b"\n" + bytes(range(128, 256))
    for name, body in (("binary", junk), ("torn", b'{"step": 1, "train/loss": 1.0}\n{"step": 2, "tr')):
        r = tmp_path / "sweep" / name
        r.mkdir(parents=True)
        (r / "summary.json").write_text(json.dumps({**good, "optimizer": name}))
        (r / "metrics.jsonl").write_bytes(body)
    res = run_cli(["report", str(tmp_path / "sweep"), "--no-plots"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    warnings = [ln for ln in res.stderr.splitlines() if "warning" in ln]
    assert any(f"{tmp_path / 'sweep' / 'binary' / 'metrics.jsonl'}:1: not UTF-8 text" in w for w in warnings), warnings
    assert any(f"{tmp_path / 'sweep' / 'torn' / 'metrics.jsonl'}:2: not JSON" in w for w in warnings), warnings
    assert len(warnings) == 2
    assert "2 runs" in res.stdout and (tmp_path / "sweep" / "report.md").exists()
