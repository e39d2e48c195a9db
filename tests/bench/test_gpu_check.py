"""bench/gpu_check.py: results written section by section (and copied to $OUT); a failing section is recorded
and the check goes on; the whole CPU check finishes (slow)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO


SCRIPT = REPO / "bench" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow     # a process per section (two torch imports); the script's own process: the test below
def test_a_failing_section_is_recorded_and_the_next_one_still_runs(tmp_path, monkeypatch, capsys):
    gc = load_script()
    monkeypatch.setattr(gc, "SECTIONS", [("no_such_section", 30, 30), ("env", 60, 60)])
    monkeypatch.setenv("OUT", str(tmp_path / "device_out"))
    assert gc.main(["--device", "cpu", "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "results.md").read_text()
    assert "**no_such_section FAILED** (exit code 1" in text
    assert "## env" in text and "- python " in text and "finished in" in text
    assert text.index("no_such_section FAILED") < text.index("## env")
    assert (tmp_path / "device_out" / "results.md").read_text() == text        # copied to $OUT
    assert (tmp_path / "device_out" / "env.log").exists()


def test_unknown_section_name_is_one_line_and_exit_2(tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--only", "envv", "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "--only envv: unknown section" in res.stderr
    assert not (tmp_path / "results.md").exists()


@pytest.mark.slow
def test_cpu_check_finishes_and_writes_every_section(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out")}
    res = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(tmp_path / "check")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    text = (tmp_path / "out" / "results.md").read_text()
    for name in ("env", "default_train", "host_syncs", "precision", "continuation", "seq2d", "lm", "torchrun"):
        assert f"## {name}" in text
    assert "FAILED" not in text and "finished in" in text


@pytest.mark.slow     # a subset of test_cpu_check_finishes_and_writes_every_section (slow too)
def test_lm_and_host_sync_sections_run_on_cpu(tmp_path):
    """The two sections that build the engine's pieces by hand (so a config change can break them without
    breaking a training test): every PEFT takes one step, and in the host-sync window Adam, C-Adam and PARC
    make only the 3 flushes' conversions."""
    res = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--only", "lm,host_syncs",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    text = (tmp_path / "results.md").read_text()
    assert "FAILED" not in text
    for peft in ("full", "lora", "solo"):
        assert f"\n| {peft} |" in text
    for name in ("adam", "cadam", "parc"):
        assert f"\n| {name} | 3 | 0.04 |" in text
