"""`contnet <args>` from tests: as a real process (run_cli) or through the same entry point in this process
(cli_inprocess), and the one-line error check."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(args: list[str], cwd: Path, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "contnet.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def cli_inprocess(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`contnet <args>` through the same entry point as run_cli (contnet.cli.main.main), in this process: no
    interpreter start and no torch/Hydra import per call.  For tests that are not about the process itself; each
    failure path keeps at least one real run_cli test.  Exit code, stdout and stderr come back as run_cli's do
    (a sys.exit becomes the return code); cwd, env, sys.argv, the root logger's handlers (Hydra's job logging)
    and torch's thread count are restored afterwards."""
    from contnet.cli.main import main
    return _in_this_process(lambda: main([str(a) for a in args]), ["contnet", *args], cwd, env)


def _in_this_process(fn, cmd: list, cwd: Path, env: dict | None) -> subprocess.CompletedProcess:
    import torch
    from hydra.core.global_hydra import GlobalHydra

    out, err = io.StringIO(), io.StringIO()
    env = {"COLUMNS": "80", **(env or {})}        # rich's width in a process whose output is a pipe
    saved_env = {k: os.environ.get(k) for k in env}
    root = logging.getLogger()
    saved_log = (list(root.handlers), root.level, torch.get_num_threads(), list(sys.argv), os.getcwd())
    os.environ.update(env)
    os.chdir(cwd)
    GlobalHydra.instance().clear()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = fn()
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        GlobalHydra.instance().clear()
        handlers, level, threads, argv, where = saved_log
        for h in root.handlers:
            if h not in handlers:
                h.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        torch.set_num_threads(threads)
        sys.argv[:] = argv
        os.chdir(where)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return subprocess.CompletedProcess(cmd, rc, out.getvalue(), err.getvalue())


def assert_one_line(res, *words, code=2) -> str:
    """`res` (a CompletedProcess) failed with exit `code` and exactly one `error:` line on stderr, no traceback,
    the line holding every one of `words`; returns that line."""
    assert res.returncode == code, res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    errors = [ln for ln in res.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, res.stderr[-2000:]
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


# A CLI test whose process is not the point: in this process in the fast suite, the same test through a real
# process in the slow one (`@pytest.mark.parametrize("cli", BOTH_CLIS)`).
BOTH_CLIS = [pytest.param(cli_inprocess, id="in-process"),
             pytest.param(run_cli, id="process", marks=pytest.mark.slow)]
