"""Golden runs: every run of tests/golden/runs.py, trained again, gives the numbers kept in
tests/golden/fixtures/ record for record — the proof that a change moves no number.

Bit for bit (exact float equality, the same keys, the same number of records) where torch's version and CPU
capability equal those the fixtures were made with (fixtures/META.json).  Elsewhere floating-point kernels
may differ (another instruction set, another torch): floats are then compared to rel 1e-5 / abs 1e-7
(everything else still exactly), and each test says so in a warning and its output (`pytest -rA`).
CONTNET_GOLDEN_TOLERANCE=1 forces that comparison here.

A failure names the run, the first differing record and key and both values.  Never regenerate the
fixtures to make this pass: `make golden` (tests/golden/regenerate.py) is for a change of numbers that is
wanted, justified in its commit message.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import pytest
import torch

from tests.golden import runs

FIXTURES = Path(__file__).resolve().parent / "fixtures"
META = json.loads((FIXTURES / "META.json").read_text())
REL, ABS = 1e-5, 1e-7
NOW = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
DIFFERENT = {k: f"fixtures {META[k]}, here {v}" for k, v in NOW.items() if META[k] != v}
BITWISE = not DIFFERENT and os.environ.get("CONTNET_GOLDEN_TOLERANCE") != "1"
MODE = "bitwise" if BITWISE else "tolerance"
HOW = ("bit for bit" if BITWISE else
       f"to rel {REL:g} / abs {ABS:g}, NOT bit for bit ("
       + ("; ".join(f"{k}: {v}" for k, v in DIFFERENT.items()) or "CONTNET_GOLDEN_TOLERANCE=1") + ")")


def equal(a, b) -> bool:
    if BITWISE or not (isinstance(a, float) and isinstance(b, float)):
        return runs.same(a, b)
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return runs.same(a, b)
    return math.isclose(a, b, rel_tol=REL, abs_tol=ABS)


def first_difference(want, got, where: str) -> str | None:
    """None, or where the fixture `want` and the rerun `got` first differ, with both values: e.g.
    "records[12]['val/loss']: fixture 0.53, now 0.54" (record 12 of metrics.jsonl, its key val/loss)."""
    if isinstance(want, dict) and isinstance(got, dict):
        if set(want) != set(got):
            return (f"{where}: keys differ: only in the fixture {sorted(set(want) - set(got))}, "
                    f"only now {sorted(set(got) - set(want))}")
        for k in want:
            diff = first_difference(want[k], got[k], f"{where}[{k!r}]")
            if diff:
                return diff
        return None
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return f"{where}: {len(want)} items in the fixture, {len(got)} now"
        for i, (w, g) in enumerate(zip(want, got)):
            diff = first_difference(w, g, f"{where}[{i}]")
            if diff:
                return diff
        return None
    if not equal(want, got):
        return f"{where}: fixture {want!r}, now {got!r}"
    return None


@pytest.mark.parametrize("run_id", list(runs.RUNS), ids=[f"{r}-{MODE}" for r in runs.RUNS])
def test_golden_run(run_id, tmp_path):
    path = FIXTURES / f"{run_id}.json"
    assert path.exists(), f"golden run {run_id} has no fixture {path}: a new run needs `make golden` (justified)"
    fixture = json.loads(path.read_text())
    assert fixture["overrides"] == runs.RUNS[run_id], (
        f"golden run {run_id}: its overrides in tests/golden/runs.py changed since the fixture was made "
        f"({fixture['overrides']} then); a changed run needs `make golden`, justified in the commit message")
    if not BITWISE:
        note = f"golden run {run_id}: floats compared {HOW}"
        print(note)
        warnings.warn(note, stacklevel=1)
    got = runs.result(run_id, workdir=tmp_path)
    context = f"(compared {HOW}; fixtures from {META['git_sha'][:12]}, torch {META['torch']}, {META['cpu_capability']})"
    assert set(got) == set(fixture) - {"id", "overrides"}, f"golden run {run_id}: parts {sorted(got)} {context}"
    for part in ("records", "summary", "cut", "resumed"):
        if part in fixture:
            diff = first_difference(fixture[part], got[part], part)
            assert diff is None, f"golden run {run_id}: {diff} {context}"
    if "resumed" in got:             # the same machine, the same process: always bit for bit
        runs_equal = runs.dumps(got["resumed"]["records"]) == runs.dumps(got["records"])
        assert runs_equal and got["resumed"]["summary"] == got["summary"], \
            f"golden run {run_id}: stopped and resumed, it differs from the uninterrupted run"


def test_every_fixture_is_a_golden_run():
    names = {p.stem for p in FIXTURES.glob("*.json")} - {"META"}
    assert names == set(runs.RUNS), f"fixtures without a run: {sorted(names - set(runs.RUNS))}"
    assert META["runs"] == list(runs.RUNS)
