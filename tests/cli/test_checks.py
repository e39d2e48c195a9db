"""Two configuration gaps left by the typed schemas (issue 12), through the CLI (in this process in the fast suite,
through a real process too in the slow one):
- a list element of the wrong type (`model.widths=[1,a]`) gets the schema's one line naming the field, what
  it must be, its default and the bad element (it was "cannot compose the config: ...");
- `trainer.resume=false` means no resume (Hydra turns `false` into a bool, which a str field made "False",
  a run directory that does not exist); `true` is refused with the fix; a run directory still resumes.
Bad input: exit 2, exactly one line on stderr, no traceback, nothing written."""
from __future__ import annotations

import pytest

from contnet.engine.config import TrainerConfig
from contnet.errors import ConfigError
from contnet.models.mlp import MLPConfig
from contnet.peft.solo import SoloConfig
from contnet.schema import typed
from tests.helpers.cli import BOTH_CLIS
from tests.helpers.runs import read_metrics

FAST = ["trainer.max_steps=3", "model.width=8", "trainer.eval_train=false", "trainer.progress=false",
        "trainer.threads=1"]


def refused(res, run_dir) -> str:
    """The one stderr line of a refused command (exit 2, nothing written)."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert not run_dir.exists()
    return lines[0]


@pytest.mark.parametrize("args, line", [
    (["model=mlp", "model.widths=[1,a]"],
     "model.widths=[1,a]: must be a list of integers or null (default null); a is not an integer"),
    (["model=seq2d", "model.widths=[64, x]"],           # as Hydra re-prints it
     "model.widths=[64,x]: must be a list of integers or null (default null); x is not an integer"),
    (["optimizer=adam", "optimizer.betas=[0.9,x]"],
     "optimizer.betas=[0.9,x]: must be a list of numbers (default [0.9,0.999]); x is not a number"),
    (["peft=solo", "peft.pairs=[[0,x]]"],
     "peft.pairs=[[0,x]]: must be a list of lists of integers or null (default null); x is not an integer"),
    (["model=mlp", "model.widths=[1,a],[2,3]", "-m"],          # one job of a sweep: the whole sweep stops
     "model.widths=[1,a]: must be a list of integers or null (default null); a is not an integer"),
])
@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_a_list_element_of_the_wrong_type_is_named(tmp_path, args, line, cli):
    key = "hydra.sweep.dir" if "-m" in args else "hydra.run.dir"
    res = cli(["train", f"{key}={tmp_path / 'run'}", *args], tmp_path)
    assert refused(res, tmp_path / "run") == f"error: {line}"


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_params_names_the_list_element_too(tmp_path, cli):
    res = cli(["params", "model=mlp", "model.widths=[1,a]"], tmp_path)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        "contnet params: error: model.widths=[1,a]: must be a list of integers or null (default null); "
        "a is not an integer"], res.stderr[-2000:]


@pytest.mark.parametrize("cls, node, line", [
    (MLPConfig, {"widths": [1, "a"]},
     "model.widths=[1,a]: must be a list of integers or null (default null); a is not an integer"),
    (SoloConfig, {"pairs": [[0, 1], 5]},
     "peft.pairs=[[0,1],5]: must be a list of lists of integers or null (default null); 5 is not a list of integers"),
    (MLPConfig, {"widths": 5}, "model.widths=5: must be a list of integers or null (default null)"),
])
def test_library_callers_get_the_same_line(cls, node, line):
    """typed() (a builder called from Python) names the field, not OmegaConf's list index ('model.1=null')."""
    with pytest.raises(ConfigError) as e:
        typed(cls, node)
    assert str(e.value) == line


@pytest.mark.parametrize("value", [False, None, ""])
def test_false_null_and_empty_mean_no_resume(value):
    assert typed(TrainerConfig, {"resume": value}).resume is None
    assert typed(TrainerConfig, {"resume": value, "overwrite": True}).overwrite   # no resume: no contradiction


@pytest.mark.parametrize("value, words", [
    ("true", ["trainer.resume=true: names no run", "trainer.resume=auto", "trainer.resume=<run dir>",
              "trainer.resume=false"]),
    ("2024", ["trainer.resume=2024: must be a run directory, auto, false or null", "trainer.resume='2024'"]),
])
@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_resume_true_or_a_number_is_refused_with_the_fix(tmp_path, value, words, cli):
    res = cli(["train", f"hydra.run.dir={tmp_path / 'run'}", f"trainer.resume={value}", *FAST], tmp_path)
    line = refused(res, tmp_path / "run")
    assert line.count("error:") == 1
    for w in words:
        assert w in line, line


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_resume_false_starts_fresh_and_a_run_dir_still_resumes(tmp_path, cli):
    src = tmp_path / "src"
    res = cli(["train", f"hydra.run.dir={src}", "trainer.resume=false", *FAST], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert [r["step"] for r in read_metrics(src) if "train/loss" in r][-1] == 3
    # false is not a resume: a second run into the same directory is refused as any fresh run would be
    again = cli(["train", f"hydra.run.dir={src}", "trainer.resume=false", *FAST], tmp_path)
    assert again.returncode == 2 and "already holds a run" in again.stderr, again.stderr[-2000:]
    # the path case: trainer.resume=<run dir> continues that run in its directory
    res = cli(["train", f"hydra.run.dir={tmp_path / 'new'}", f"trainer.resume={src}", *FAST[1:],
               "trainer.max_steps=5"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert [r["step"] for r in read_metrics(src) if "train/loss" in r][-3:] == [3, 4, 5]
