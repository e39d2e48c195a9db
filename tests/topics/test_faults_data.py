"""Data faults a user meets (issue 21): E2E files read as the official ones are (a BOM, a third `||` field,
a CSV row with more fields than its header), a download without a network, a `task.data_dir` that is a
file, and a sample count too small for the splits.  Each is one line naming the problem and the fix, exit 2."""
from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.cli import assert_one_line, cli_inprocess
from tests.helpers.config import compose
from tests.helpers.data import SHARED_E2E


LINES = ["name : The Mill | Type : pub||The Mill is a pub . ",
         "name : The Mill | Type : pub||A pub called The Mill . ",
         "name : Zizzi | area : riverside||Zizzi is by the river . "]


def e2e_files(d: Path, valid: list[str] = LINES, test: list[str] = LINES, bom: bool = False) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for split, lines in (("valid", valid), ("test", test)):
        (d / f"{split}.txt").write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return d


def e2e_train(tmp_path, data: Path, *args):
    return cli_inprocess(["train", "task=e2e", "model=tiny-gpt2", f"task.data_dir={data}",
                          f"hydra.run.dir={tmp_path / 'run'}", "trainer.max_steps=1", *args], tmp_path)


# --- E2E files --------------------------------------------------------------------------------------------------

def test_e2e_bom_is_not_part_of_the_first_mr(tmp_path):
    from contnet.tasks.e2e_data import load_e2e
    d = e2e_files(tmp_path / "e2e", bom=True)
    pairs = load_e2e(d, "test")
    assert pairs[0] == ("name : The Mill | Type : pub", "The Mill is a pub .")
    assert len({mr for mr, _ in pairs}) == 2
    (d / "test.txt").unlink()                     # the official CSV as saved by a spreadsheet: BOM before `mr`
    (d / "testset_w_refs.csv").write_text('\ufeffmr,ref\n"name[The Mill], eatType[pub]","The Mill is a pub."\n',
                                          encoding="utf-8")
    assert load_e2e(d, "test") == [("name : The Mill | Type : pub", "The Mill is a pub.")]


@pytest.mark.skipif(not (SHARED_E2E / "test.txt").is_file(), reason="no shared E2E data next to the checkout")
def test_e2e_shared_test_split_has_630_mrs_with_or_without_bom(tmp_path):
    from contnet.tasks.e2e_data import load_e2e
    assert len({mr for mr, _ in load_e2e(SHARED_E2E, "test")}) == 630
    (tmp_path / "test.txt").write_bytes(b"\xef\xbb\xbf" + (SHARED_E2E / "test.txt").read_bytes())
    assert len({mr for mr, _ in load_e2e(tmp_path, "test")}) == 630


@pytest.mark.parametrize("bad,words", [
    ("name : Zizzi||Zizzi is by the river .||extra", ["3 fields", "'MR||reference'"]),
    ("||Zizzi is by the river .", ["empty MR"]),
    ("name : Zizzi||  ", ["empty reference"]),
])
def test_e2e_malformed_line_is_refused_with_file_line(tmp_path, bad, words):
    d = e2e_files(tmp_path / "e2e", test=[LINES[0], bad])
    res = e2e_train(tmp_path, d)
    assert_one_line(res, f"{d / 'test.txt'}:2:", *words)
    assert not (tmp_path / "run").exists()


def test_e2e_csv_row_with_more_fields_than_the_header_is_refused(tmp_path):
    d = e2e_files(tmp_path / "e2e")
    (d / "test.txt").unlink()
    (d / "testset_w_refs.csv").write_text('mr,ref\n"name[The Mill]","The Mill."\n"name[Zizzi]","Zizzi.","x"\n',
                                          encoding="utf-8")
    assert_one_line(e2e_train(tmp_path, d), f"{d / 'testset_w_refs.csv'}:3:", "3 fields", "'mr' and 'ref'")


# --- task.data_dir is a file -------------------------------------------------------------------------------------

@pytest.mark.parametrize("task", ["mnist", "e2e"])
@pytest.mark.parametrize("download", ["false", "true"])
def test_data_dir_that_is_a_file_is_called_one(tmp_path, task, download):
    f = tmp_path / "data.txt"
    f.write_text("not a folder\n")
    model = ["model=tiny-gpt2"] if task == "e2e" else []
    res = cli_inprocess(["train", f"task={task}", *model, f"task.data_dir={f}", f"task.download={download}",
                         f"hydra.run.dir={tmp_path / 'run'}", "trainer.max_steps=1"], tmp_path)
    assert_one_line(res, f"task.data_dir={f} is a file, not a directory", "folder")
    assert not (tmp_path / "run").exists()


def test_contnet_data_that_is_a_file_is_called_one(tmp_path):
    f = tmp_path / "data.txt"
    f.write_text("not a folder\n")
    res = cli_inprocess(["train", "task=mnist", "task.download=false", f"hydra.run.dir={tmp_path / 'run'}",
                         "trainer.max_steps=1"], tmp_path, env={"CONTNET_DATA": str(f)})
    assert_one_line(res, f"{f} is a file, not a directory", "CONTNET_DATA")


# --- a download without a network --------------------------------------------------------------------------------

@pytest.mark.parametrize("task", ["mnist", "cifar10"])
def test_offline_download_names_the_network(tmp_path, monkeypatch, task):
    def no_network(*args, **kw):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    data = tmp_path / "data"
    res = cli_inprocess(["train", f"task={task}", f"task.data_dir={data}", "task.download=true",
                         f"hydra.run.dir={tmp_path / 'run'}", "trainer.max_steps=1"], tmp_path)
    line = assert_one_line(res, f"could not download {task} into {data}", "network", "could not be reached",
                           "name resolution", "task.download=false")
    assert "RuntimeError" not in line and "URLError" not in line
    assert not (tmp_path / "run").exists()


# --- too few samples for the splits -------------------------------------------------------------------------------

def test_parity_with_too_few_samples_for_the_splits_is_refused(tmp_path):
    res = cli_inprocess(["train", "task=parity", "task.num_samples=2", f"hydra.run.dir={tmp_path / 'run'}",
                         "trainer.max_steps=1"], tmp_path)
    assert_one_line(res, "task.num_samples=2", "val and test splits would be empty", "at least 4")
    assert not (tmp_path / "run").exists()
    from contnet.registry import TASKS
    for n in (4, 7):                             # the minimum named works, and every split has examples
        task = TASKS.get("parity")(compose(["task=parity", f"task.num_samples={n}"]).task, 0)
        assert task.splits() == ["train", "val", "test"]


def test_zero_fraction_drops_its_split_without_complaint(tmp_path):
    from contnet.registry import TASKS
    task = TASKS.get("parity")(compose(["task=parity", "task.num_samples=3", "task.val_frac=0",
                                        "task.test_frac=0.2"]).task, 0)
    assert task.splits() == ["train", "test"] and task.num_train() == 2


def test_e2e_offline_download_names_the_network(tmp_path, monkeypatch):
    def no_network(*args, **kw):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    data = tmp_path / "e2e"
    res = e2e_train(tmp_path, data, "task.download=true", "task.scale=cpu")
    assert_one_line(res, f"{data / 'valid.txt'}", "task.download=true could not fetch valid.txt", "network",
                    "could not be reached", "Connection refused", "put the files there")
    assert not (tmp_path / "run").exists() and not data.exists()
