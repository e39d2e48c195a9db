"""cli/main.py: every command stops on a signal with one line and exit 128 + N; a command's running child (a
`contnet tune --workers 2` worker) stops with it, not left running on its own.  A one-process study stopped and
rerun: tests/studies/test_tune.py."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest


def children(pid: int) -> list[int]:
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                kids.append(int(d))
    return kids


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc to find the child process")
def test_sigterm_to_contnet_tune_stops_its_worker_and_says_so_in_one_line(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "contnet.cli.main", "tune", "experiment=tune_digits_ae", "--trials",
                             "2", "--seeds", "0", "--arms", "adam", "--workers", "2", "trainer.max_steps=400",
                             "--out", str(tmp_path / "out")], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not children(proc.pid):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(2)
    kids = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    lines = proc.stderr.read().strip().splitlines()
    assert len(lines) == 1 and "stopped by signal 15" in lines[0], lines
    time.sleep(1)
    assert kids and not [k for k in kids if os.path.exists(f"/proc/{k}")]      # no orphaned worker
