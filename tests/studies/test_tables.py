"""The docs' results tables (contnet/studies/tables.py): every marked table in README.md and docs/ equals what its
committed raw results render, a number edited by hand fails the check (naming the table and line), and nothing
under docs/results/ names a machine path."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from contnet.studies import artifact, tables
from contnet.studies.tables import Col, Table
from tests.helpers import REPO
from tests.helpers.cli import assert_one_line, cli_inprocess, run_cli


def marked(root) -> dict[str, list[str]]:
    """table name -> the docs (relative) that mark it."""
    found: dict[str, list[str]] = {}
    for path in tables.doc_files(root):
        for line in path.read_text().splitlines():
            if m := tables.START.match(line.strip()):
                found.setdefault(m["name"], []).append(path.relative_to(root).as_posix())
    return found


def test_every_marked_table_equals_its_rendering_from_the_committed_results(capsys):
    assert tables.run(REPO, check=True) == 0, capsys.readouterr().err
    assert set(marked(REPO)) == set(tables.TABLES), "a table is defined but marked in no doc, or the reverse"


@pytest.fixture
def docs_copy(tmp_path):
    """README.md and docs/ (with the raw results) in a folder of their own, to edit by hand."""
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    return tmp_path


def _edit_a_number(path, table: str) -> tuple[int, str]:
    """Change the first decimal number inside `table`'s block; returns (line number, the edited line)."""
    lines = path.read_text().split("\n")
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"<!-- table: {table} "))
    i = next(i for i in range(start + 3, len(lines)) if re.search(r"\d\.\d", lines[i]))
    lines[i] = re.sub(r"(\d)\.(\d)", lambda m: f"{m[1]}.{(int(m[2]) + 1) % 10}", lines[i], count=1)
    path.write_text("\n".join(lines))
    return i + 1, lines[i]


def test_a_number_edited_by_hand_fails_the_check_naming_table_and_line(docs_copy):
    """Through the real CLI, as a user (or CI) meets it: exit 1, one line naming the doc line and the table; then
    `contnet tables` renders the number back from the results and the check passes."""
    line, edited = _edit_a_number(docs_copy / "README.md", "readme-solo")
    res = run_cli(["tables", "--check", "--root", docs_copy], cwd=docs_copy, timeout=120)
    assert_one_line(res, f"README.md:{line}:", "table readme-solo", "contnet tables", code=1)
    assert edited in (docs_copy / "README.md").read_text()          # --check writes nothing

    assert cli_inprocess(["tables", "--root", docs_copy], cwd=docs_copy).returncode == 0
    assert (docs_copy / "README.md").read_text() == (REPO / "README.md").read_text()
    assert cli_inprocess(["tables", "--check", "--root", docs_copy], cwd=docs_copy).returncode == 0


def test_each_solo_table_renders_from_its_own_study_folder(docs_copy):
    """A results row edited in runs.jsonl moves the doc's number: the table reads the artifact, not the doc."""
    runs = docs_copy / "docs/results/solo_study/gpu-confirm/runs.jsonl"
    rows = artifact.read_rows(runs.parent)
    for row in rows:
        if row["arm"] == "lora-lr6e-3":
            row["final"]["test/bleu"] += 10.0
    artifact.write_rows(runs.parent, rows)
    res = cli_inprocess(["tables", "--check", "--root", docs_copy], cwd=docs_copy)
    assert_one_line(res, "table readme-solo", "63.0 ± 0.6", "73.0 ± 0.6", code=1)


# ---- the renderer on a small artifact --------------------------------------------------------------------------

def _row(arm, seed, loss, status="completed", **extra):
    return {"run": f"{arm}/s{seed}", "arm": arm, "choices": {"task": "digits"}, "overrides": [], "seed": seed,
            "status": status, "final": {"val/loss": loss}, "best": {}, "steps": 10, "wall_s": 2.0 + seed,
            "train_time_s": 1.0, **extra}


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A repository with one study (arm b has a diverged run) and one doc marking its table."""
    study = tmp_path / "docs/results/tiny"
    tuned = {"optimizer.lr": 0.0086612, "optimizer.delta_l_min": 0.017214}
    artifact.write_rows(study, [_row("a", 0, 0.5, params=tuned), _row("a", 1, 0.7, params=tuned), _row("b", 0, 0.2),
                                _row("b", 1, float("nan"), status="diverged")])
    table = Table("tiny", "tiny", (Col("arm", "arm"), Col("runs", "n/N"), Col("val loss", "final:val/loss", ".2f"),
                                   Col("wall s", "wall_s", ".1f", std=False), Col("test", "final:test/loss")),
                  sort="final:val/loss", labels={"b": "arm B"})
    monkeypatch.setattr(tables, "TABLES", {"tiny": table})
    doc = tmp_path / "docs/page.md"
    doc.write_text(f"# page\n\n{tables.start_marker(table)}\n| stale |\n{tables.END}\n\nafter\n")
    return tmp_path, doc


def test_render_groups_averages_completed_runs_and_sorts(tiny):
    root, doc = tiny
    assert tables.run(root, check=False) == 0
    assert doc.read_text().split("\n")[3:7] == [
        "| arm | runs | val loss | wall s | test |", "|---|---:|---:|---:|---:|",
        "| arm B | 1/2 | 0.20 | 2.0 | – |",                 # the diverged seed counted, not averaged
        "| a | 2/2 | 0.60 ± 0.14 | 2.5 | – |"]
    assert doc.read_text().endswith(f"{tables.END}\n\nafter\n")
    assert tables.run(root, check=True) == 0


def test_a_table_json_beside_the_artifact_is_rendered_as_given(tiny):
    root, doc = tiny
    (root / "docs/results/tiny/table-tiny.json").write_text(
        '{"header": ["size", "ms"], "rows": [["small", "0.43"], ["large", "73.4"]]}')
    assert tables.run(root, check=False) == 0
    assert "| size | ms |\n|---|---:|\n| small | 0.43 |\n| large | 73.4 |" in doc.read_text()


@pytest.mark.parametrize("breakage, words", [
    (lambda doc: doc.write_text(doc.read_text().replace("table: tiny ", "table: nosuch ")),
     ["docs/page.md:3", "unknown table 'nosuch'"]),
    (lambda doc: doc.write_text(doc.read_text().replace(tables.END, "")), ["docs/page.md:3", "end table"]),
    (lambda doc: (doc.parent / "results/tiny/runs.jsonl").unlink(), ["table tiny", "runs.jsonl is missing"]),
])
def test_a_broken_block_is_one_line_exit_2_and_no_doc_is_written(tiny, breakage, words):
    root, doc = tiny
    other = root / "README.md"                 # a doc that would render fine is not written either
    other.write_text(f"{tables.start_marker(tables.TABLES['tiny'])}\n| stale |\n{tables.END}\n")
    breakage(doc)
    before = doc.read_text(), other.read_text()
    res = cli_inprocess(["tables", "--root", root], cwd=root)
    assert_one_line(res, *words, code=2)
    assert (doc.read_text(), other.read_text()) == before


def test_outside_a_repository_it_says_where_to_run_it(tmp_path):
    res = cli_inprocess(["tables", "--root", tmp_path], cwd=tmp_path)
    assert_one_line(res, "no docs/results/", "--root", code=2)


# ---- no machine path in the evidence ---------------------------------------------------------------------------

MACHINE_PATH = re.compile(r"(?<![\w.])/(work|tmp|home)/")
# Files allowed a machine path until they are replaced (the test below fails while an entry names a file that no
# longer holds one). Empty since the old reproduce-paper reports gave way to reproduce-cpu/ (6ec8d39).
PENDING: set[str] = set()


def test_no_committed_file_under_docs_results_names_a_machine_path():
    files = subprocess.run(["git", "ls-files", "docs/results"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    assert files, "git ls-files found nothing under docs/results"
    bad = []
    for name in files:
        data = (REPO / name).read_bytes()
        if b"\0" not in data[:1024] and MACHINE_PATH.search(data.decode("utf-8", "replace")):
            bad.append(name)
    assert not set(bad) - PENDING, f"absolute machine paths (/work/, /tmp/, /home/) in: {sorted(set(bad) - PENDING)}"
    assert not PENDING - set(bad), f"no machine path left in {sorted(PENDING - set(bad))}: remove it from PENDING"


def test_rows_follow_the_definitions_order_and_a_name_without_runs_is_an_error(tiny, monkeypatch):
    root, doc = tiny
    table = Table("tiny", "tiny", (Col("task", "choices.task"), Col("arm", "arm"), Col("n", "n")),
                  group=("choices.task", "arm"), order=(("digits", "a"), ("digits", "b")))
    monkeypatch.setitem(tables.TABLES, "tiny", table)
    assert tables.run(root, check=False) == 0
    assert "| digits | a | 2 |\n| digits | b | 1 |" in doc.read_text()
    monkeypatch.setitem(tables.TABLES, "tiny", Table("tiny", "tiny", table.columns, group=table.group,
                                                     where=(("seed", 1),)))
    assert tables.run(root, check=False) == 0
    assert "| digits | a | 1 |\n| digits | b | 0 |" in doc.read_text()    # seed 1 only: b's diverged, a's completed
    per_seed = (Col("arm", "arm"), *(Col(f"s{k}", "final:val/loss", ".1f", where=(("seed", k),)) for k in (0, 1)))
    monkeypatch.setitem(tables.TABLES, "tiny", Table("tiny", "tiny", per_seed, order=("a", "b")))
    assert tables.run(root, check=False) == 0
    assert "| a | 0.5 | 0.7 |\n| b | 0.2 | – |" in doc.read_text()     # a column per seed; b's seed 1 diverged
    tuned = (Col("arm", "arm"), Col("tuned", "params", "params"))
    monkeypatch.setitem(tables.TABLES, "tiny", Table("tiny", "tiny", tuned, order=("a",),
                                                     labels={"optimizer.delta_l_min": "Δλ floor"}))
    assert tables.run(root, check=False) == 0
    assert "| a | lr 0.00866, Δλ floor 0.0172 |" in doc.read_text()
    counted = (Col("arm", "arm"), Col("diverged", "count:status=diverged"))
    monkeypatch.setitem(tables.TABLES, "tiny", Table("tiny", "tiny", counted, order=("a", "b")))
    assert tables.run(root, check=False) == 0
    assert "| a | 0 / 2 |\n| b | 1 / 2 |" in doc.read_text()
    monkeypatch.setitem(tables.TABLES, "tiny", Table("tiny", "tiny", counted, parts=("mnist1d",)))
    res = cli_inprocess(["tables", "--root", root], cwd=root)
    assert_one_line(res, "docs/results/tiny/mnist1d/runs.jsonl is missing")
    monkeypatch.setitem(tables.TABLES, "tiny", Table("tiny", "tiny", table.columns, group=table.group,
                                                     order=(("digits", "a"), ("digits", "c"))))
    assert_one_line(cli_inprocess(["tables", "--root", root], cwd=root), "table tiny", "no runs of digits c", code=2)


def test_a_welch_column_tests_each_arm_against_the_baseline_arm(tmp_path, monkeypatch):
    """The verdict beside a table is the table's own: Welch's p between a group's completed runs and the baseline
    arm's (as scipy computes it), – on the baseline's own line and where a side has one run."""
    from scipy.stats import ttest_ind
    losses = {"base": [0.50, 0.52, 0.55], "good": [0.40, 0.41, 0.45], "one": [0.3]}
    artifact.write_rows(tmp_path / "docs/results/w", [_row(arm, k, v) for arm, vs in losses.items()
                                                      for k, v in enumerate(vs)])
    table = Table("w", "w", (Col("arm", "arm"), Col("p", "welch:final:val/loss", ".6g", against=(("arm", "base"),))),
                  order=("base", "good", "one"))
    monkeypatch.setattr(tables, "TABLES", {"w": table})
    p = ttest_ind(losses["good"], losses["base"], equal_var=False).pvalue
    assert tables.render(table, tmp_path / "docs/results")[2:] == ["| base | – |", f"| good | {p:.6g} |", "| one | – |"]


def test_a_table_written_by_a_command_names_that_command_when_its_json_is_missing(tiny, monkeypatch):
    root, doc = tiny
    monkeypatch.setitem(tables.TABLES, "tiny", Table("tiny", "tiny", (), written_by="python bench/x.py tables"))
    res = cli_inprocess(["tables", "--check", "--root", root], cwd=root)
    assert_one_line(res, "table-tiny.json is missing", "python bench/x.py tables", code=2)


def _bench_tune():
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_tune", REPO / "bench" / "bench_tune.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_tuning_tables_json_is_what_bench_tune_renders_from_the_committed_rows(docs_copy):
    """docs/tuning.md's tables come from table-<name>.json: those files must be bench_tune.py's rendering of the
    committed rows (a number edited in the json, or a row edited without rerunning `tables`, fails here)."""
    import json
    bench, results = _bench_tune(), REPO / "docs/results/tune_digits_ae"
    for folder, name, table in ((results / "pruners", "tuning-pruners", bench.pruner_table(results / "pruners")),
                                (results, "tuning-cost", bench.cost_table(results))):
        assert json.loads((folder / f"table-{name}.json").read_text()) == json.loads(json.dumps(table)), name
    copy = docs_copy / "docs/results/tune_digits_ae"
    rows = artifact.read_rows(copy / "workers")
    rows[0]["wall_s"] += 100.0
    artifact.write_rows(copy / "workers", rows)
    assert bench.main(["tables", "--results", str(copy)]) == 0
    res = cli_inprocess(["tables", "--check", "--root", docs_copy], cwd=docs_copy)
    assert_one_line(res, "docs/tuning.md:", "table tuning-cost", "124, 24, 26", code=1)
