"""Nothing lost at any moment of a run (issue 21): a signal in every phase, one writer per run directory, a
resume that cannot mislabel a run, overwrite that leaves nothing of the old run.  Each case goes through the
real CLI; a signal "in a phase" is sent by the process to itself from a wrapper around the function that runs that
phase (the product code is unchanged, the signal is real).  In the fast suite the CLI runs in this process (the
signal goes to pytest's process, whose handlers the run replaces while it runs), except for one case per kind that
needs a process of its own; each in-process case is also run through a real process in the slow suite."""
from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from tests.helpers.cli import cli_inprocess
from tests.helpers.runs import curves, read_metrics, run_inprocess


TINY = ["trainer.max_steps=25", "trainer.eval_every=10", "model.width=16", "trainer.progress=false",
        "trainer.log_every=5"]

# phase -> (module, function, how to tell the phase's call): the wrapper sends the signal on entering it
PHASES = {
    "build": ("contnet.engine.run", "build", "True"),
    "final_eval": ("contnet.engine.loop", "evaluate", "kw.get('final') or (len(a) > 1 and a[1])"),
    "outputs": ("contnet.engine.loop", "plot", "True"),
    "first_write": ("contnet.engine.run", "_first_write", "True"),
    "summary": ("contnet.engine.run", "atomic_write_json", "True"),
}

DRIVER = textwrap.dedent("""
    import importlib, os, signal, sys
    mod_name, fn_name, cond, sigs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    mod = importlib.import_module(mod_name)
    orig = getattr(mod, fn_name)
    fired = []
    def wrapped(*a, **kw):
        if eval(cond):
            fired.append(1)
            for s in sigs.split(","):
                os.kill(os.getpid(), int(s))
        return orig(*a, **kw)
    setattr(mod, fn_name, wrapped)
    second = os.environ.get("SECOND_SIGNAL_IN")   # module:function that sends one more signal on entry, after the first
    if second:
        m2, f2 = second.split(":")
        mod2 = importlib.import_module(m2)
        orig2 = getattr(mod2, f2)
        def wrapped2(*a, **kw):
            if fired:                                     # only after the first signal
                os.kill(os.getpid(), signal.SIGINT)
            return orig2(*a, **kw)
        setattr(mod2, f2, wrapped2)
    from contnet.cli.main import main
    sys.exit(main(sys.argv[5:]))
""")


def signal_in(phase: str, sigs: list[int], args: list[str], cwd: Path, env: dict | None = None,
              process: bool = True):
    """`contnet train <args>` that sends itself `sigs` on entering `phase`: through DRIVER in a real process, or
    (process=False) the same wrapper around the same function in this process, through cli_inprocess."""
    mod, fn, cond = PHASES[phase]
    if not process:
        return _signal_in_this_process(phase, sigs, ["train", *args], cwd, env or {})
    return subprocess.run([sys.executable, "-c", DRIVER, mod, fn, cond, ",".join(map(str, sigs)), "train", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def _send(sig: int) -> None:
    """SIGNAL to this process, which must be the run's to handle: with Python's own handler (or none) it would stop
    pytest instead of failing the test."""
    assert signal.getsignal(sig) not in (signal.SIG_DFL, signal.SIG_IGN, signal.default_int_handler, None), \
        f"no handler of the run for signal {sig}: it would stop this process"
    os.kill(os.getpid(), sig)


def _signal_in_this_process(phase: str, sigs: list[int], argv: list[str], cwd: Path, env: dict):
    import importlib
    mod_name, fn_name, cond = PHASES[phase]
    mod = importlib.import_module(mod_name)
    orig = getattr(mod, fn_name)
    fired, restore = [], [(mod, fn_name, orig)]

    def wrapped(*a, **kw):
        if eval(cond):
            fired.append(1)
            for s in sigs:
                _send(s)
        return orig(*a, **kw)
    setattr(mod, fn_name, wrapped)
    if env.get("SECOND_SIGNAL_IN"):          # module:function that sends SIGINT on entry, after the first signal
        m2, f2 = env["SECOND_SIGNAL_IN"].split(":")
        mod2 = importlib.import_module(m2)
        orig2 = getattr(mod2, f2)
        restore.append((mod2, f2, orig2))

        def wrapped2(*a, **kw):
            if fired:
                _send(signal.SIGINT)
            return orig2(*a, **kw)
        setattr(mod2, f2, wrapped2)
    try:
        return cli_inprocess(argv, cwd)
    finally:
        for m, name, fn in reversed(restore):
            setattr(m, name, fn)


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def ckpt_step(run_dir: Path) -> int:
    return int(torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["progress"]["step"])


def snapshot(run_dir: Path) -> dict:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    return run_dir, run_inprocess(TINY, run_dir)


@pytest.mark.parametrize("sig, process", [(signal.SIGTERM, True), (signal.SIGINT, False),
                                          pytest.param(signal.SIGINT, True, marks=pytest.mark.slow)])
def test_a_signal_in_the_final_evaluation_keeps_records_status_steps_and_a_checkpoint(tmp_path, reference, sig,
                                                                                      process):
    """The one signal case of the fast suite through a real process (SIGTERM); SIGINT in this process."""
    run_dir = tmp_path / "run"
    proc = signal_in("final_eval", [sig], [f"hydra.run.dir={run_dir}", *TINY], tmp_path, process=process)
    assert proc.returncode == 128 + sig, proc.stderr
    assert "Traceback" not in proc.stderr
    s = summary_of(run_dir)
    assert s["status"] == "interrupted" and s["signal"] == sig and s["steps"] == 25
    assert ckpt_step(run_dir) == 25
    assert [r["step"] for r in read_metrics(run_dir) if "train/loss" in r] == list(range(1, 26))
    assert not any("test/acc" in r for r in read_metrics(run_dir))        # the final evaluation did not happen
    again = cli_inprocess(["train", f"hydra.run.dir={run_dir}", *TINY, "trainer.resume=auto"], tmp_path)
    assert again.returncode == 0, again.stderr
    ref_dir, ref = reference
    assert curves(run_dir) == curves(ref_dir)
    assert summary_of(run_dir)["final"] == ref["final"] and summary_of(run_dir)["status"] == "completed"


@pytest.mark.parametrize("process", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_signal_while_writing_the_outputs_is_resumable_without_a_second_final_record(tmp_path, reference, process):
    run_dir = tmp_path / "run"
    proc = signal_in("outputs", [signal.SIGTERM], [f"hydra.run.dir={run_dir}", *TINY], tmp_path, process=process)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    s = summary_of(run_dir)
    assert s["status"] == "interrupted" and s["steps"] == 25 and ckpt_step(run_dir) == 25
    assert sum("test/acc" in r for r in read_metrics(run_dir)) == 1        # the final evaluation ran once
    again = cli_inprocess(["train", f"hydra.run.dir={run_dir}", *TINY, "trainer.resume=auto", "trainer.plot=true"],
                          tmp_path)
    assert again.returncode == 0, again.stderr
    assert curves(run_dir) == curves(reference[0])                     # still one final record, not two
    assert (run_dir / "curves.png").exists()                           # the outputs the signal stopped are written


@pytest.mark.parametrize("process", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_signal_while_building_gives_an_interrupted_summary_at_step_0(tmp_path, process):
    run_dir = tmp_path / "run"
    proc = signal_in("build", [signal.SIGTERM], [f"hydra.run.dir={run_dir}", *TINY], tmp_path, process=process)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    s = summary_of(run_dir)
    assert s["status"] == "interrupted" and s["steps"] == 0
    assert not (run_dir / "checkpoints").exists()
    assert "interrupted by signal 15 at step 0" in proc.stderr


@pytest.mark.parametrize("process", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_second_sigint_during_the_checkpoint_aborts_cleanly_and_the_last_checkpoint_stands(tmp_path, reference,
                                                                                           process):
    run_dir = tmp_path / "run"
    args = [f"hydra.run.dir={run_dir}", *TINY, "trainer.checkpoint_every=10"]
    proc = signal_in("final_eval", [signal.SIGINT], args, tmp_path,
                     env={"SECOND_SIGNAL_IN": "contnet.engine.checkpoint:save"}, process=process)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    s = summary_of(run_dir)
    assert s["status"] == "interrupted" and s["steps"] == 25
    assert ckpt_step(run_dir) == 20                                     # the save at 25 was cut; 20 stands
    assert not list((run_dir / "checkpoints").glob(".*tmp"))             # no half-written temp file
    again = cli_inprocess(["train", *args, "trainer.resume=auto"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert curves(run_dir) == curves(reference[0])


PATCHED_TRAIN = textwrap.dedent("""
    import importlib, sys
    module, attr, source = sys.argv[1:4]
    space = {}
    exec(source, space)
    setattr(importlib.import_module(module), attr, space["replacement"])
    from contnet.cli.main import main
    sys.exit(main(sys.argv[4:]))
""")


def train_patched(module: str, attr: str, source: str, args: list[str], cwd: Path, monkeypatch, process: bool):
    """`contnet train <args>` with `module.attr` replaced by the function `replacement` that `source` defines:
    in a real process (the patch made by its driver) or in this one (the same patch by monkeypatch)."""
    if process:
        return subprocess.run([sys.executable, "-c", PATCHED_TRAIN, module, attr, source, "train", *args], cwd=cwd,
                              capture_output=True, text=True, timeout=300)
    space: dict = {}
    exec(source, space)
    monkeypatch.setattr(importlib.import_module(module), attr, space["replacement"])
    return cli_inprocess(["train", *args], cwd)


DISK_ON_FIRE = """
def replacement(*a, **k):
    raise RuntimeError("disk on fire")
"""

FULL_DISK = """
import errno
def replacement(path, obj):
    raise OSError(errno.ENOSPC, "No space left on device", str(path))
"""


@pytest.mark.parametrize("process", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_an_exception_after_the_loop_reports_the_true_step_count(tmp_path, monkeypatch, process):
    run_dir = tmp_path / "run"
    proc = train_patched("contnet.engine.loop", "plot", DISK_ON_FIRE, [f"hydra.run.dir={run_dir}", *TINY], tmp_path,
                         monkeypatch, process)
    assert proc.returncode == 1 and "disk on fire" in proc.stderr
    s = summary_of(run_dir)
    assert s["status"] == "failed" and s["steps"] == 25


# ------------------------------------------------------------------------------------------ one writer


def start_slow_run(run_dir: Path, cwd: Path) -> subprocess.Popen:
    log = open(cwd / "slow.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "contnet.cli.main", "train", f"hydra.run.dir={run_dir}",
                             "trainer.max_steps=100000", "model.width=16", "trainer.progress=false",
                             "trainer.eval_every=0", "trainer.checkpoint_every=20"],
                            cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoints" / "last.pt").exists():
        assert proc.poll() is None, (cwd / "slow.log").read_text()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc


def test_a_second_writer_is_refused_while_a_run_writes_and_a_dead_ones_lock_is_free(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_slow_run(run_dir, tmp_path)
    try:
        for extra in ([], ["trainer.overwrite=true"], ["trainer.resume=auto"]):
            second = cli_inprocess(["train", f"hydra.run.dir={run_dir}", "trainer.max_steps=5", *extra], tmp_path)
            assert second.returncode == 2, extra
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1 and "is in use by another run" in lines[0] and f"pid {proc.pid}" in lines[0], lines
        scoring = cli_inprocess(["eval", str(run_dir)], tmp_path)      # eval/ is a write into the run too
        assert scoring.returncode == 2 and "is in use by another run" in scoring.stderr, scoring.stderr
        assert not (run_dir / "eval").exists()
    finally:
        proc.kill()                                         # SIGKILL: the lock file stays, its flock is gone
        proc.wait(timeout=30)
    assert (run_dir / ".contnet.lock").exists()
    step = ckpt_step(run_dir)
    resumed = cli_inprocess(["train", f"hydra.run.dir={run_dir}", f"trainer.max_steps={step + 5}", "model.width=16",
                             "trainer.progress=false", "trainer.eval_every=0", "trainer.checkpoint_every=20",
                             "trainer.resume=auto"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert summary_of(run_dir)["steps"] == step + 5
    assert not (run_dir / ".contnet.lock").exists()         # released at the end


def test_two_sweeps_into_one_directory_the_second_is_refused(tmp_path):
    from contnet.engine import rundir
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from contnet.engine import rundir
        rundir.acquire({str(sweep)!r}); print("locked", flush=True); time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = cli_inprocess(["train", "-m", f"hydra.sweep.dir={sweep}", "seed=0,1", "trainer.max_steps=3"], tmp_path)
        assert proc.returncode == 2 and "is in use by another run" in proc.stderr, proc.stderr
        assert not any(p.name.isdigit() for p in sweep.iterdir())
    finally:
        holder.kill()
        holder.wait()
    assert rundir.holder(sweep)                              # the words for a message, even for a dead holder


# ------------------------------------------------------------------------------------------ resume


def test_a_refused_resume_leaves_every_file_of_the_source_run_byte_identical(tmp_path):
    run_dir = tmp_path / "run"
    first = cli_inprocess(["train", f"hydra.run.dir={run_dir}", *TINY, "trainer.max_steps=5"], tmp_path)
    assert first.returncode == 0, first.stderr
    (run_dir / "summary.json").unlink()                     # as if killed after its checkpoint: resumable
    before = snapshot(run_dir)
    for change in (["optimizer=rmsprop"], ["seed=7"], ["optimizer.lr=0.01"], ["trainer.precision=bf16"]):
        proc = cli_inprocess(["train", f"hydra.run.dir={run_dir}", *TINY, "trainer.resume=auto", *change], tmp_path)
        assert proc.returncode == 2, (change, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        key = change[0].split("=")[0]
        assert key in proc.stderr or "optimizer" in proc.stderr, proc.stderr
        assert snapshot(run_dir) == before, change                 # .hydra/ and contnet.log included


def test_a_no_op_resume_of_a_completed_run_changes_no_file(tmp_path):
    run_dir = tmp_path / "run"
    assert cli_inprocess(["train", f"hydra.run.dir={run_dir}", *TINY], tmp_path).returncode == 0
    before = snapshot(run_dir)
    proc = cli_inprocess(["train", f"hydra.run.dir={run_dir}", *TINY, "trainer.resume=auto"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(run_dir) == before


def test_resume_into_another_directory_writes_the_continued_config_to_the_source_run(tmp_path):
    src = tmp_path / "src"
    assert cli_inprocess(["train", f"hydra.run.dir={src}", *TINY, "trainer.max_steps=5"], tmp_path).returncode == 0
    (src / "summary.json").unlink()
    other = tmp_path / "other"
    proc = cli_inprocess(["train", f"hydra.run.dir={other}", *TINY, "trainer.max_steps=9", f"trainer.resume={src}"],
                   tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert summary_of(src)["steps"] == 9
    assert "max_steps: 9" in (src / ".hydra" / "config.yaml").read_text()   # .hydra/ describes the run there
    assert not (other / ".hydra").exists()                  # no ghost run for `contnet report`


def test_a_resume_over_metrics_with_missing_records_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    args = [f"hydra.run.dir={run_dir}", *TINY, "trainer.checkpoint_every=10"]
    assert cli_inprocess(["train", *args], tmp_path).returncode == 0
    (run_dir / "summary.json").unlink()
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    (run_dir / "metrics.jsonl").write_text("\n".join(ln for ln in lines if '"step": 7,' not in ln) + "\n")
    before = snapshot(run_dir)
    proc = cli_inprocess(["train", *args, "trainer.resume=auto"], tmp_path)
    assert proc.returncode == 2 and "first missing: step 7" in proc.stderr, proc.stderr
    assert snapshot(run_dir) == before


# ------------------------------------------------------------------------------------------ overwrite, sweeps


def test_overwrite_leaves_nothing_of_the_old_run(tmp_path):
    run_dir = tmp_path / "run"
    assert cli_inprocess(["train", f"hydra.run.dir={run_dir}", *TINY, "seed=1"], tmp_path).returncode == 0
    for junk in ("adapter/adapter.safetensors", "eval/scores.json", "test_predictions.txt", "wandb/run-1/x"):
        (run_dir / junk).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / junk).write_text("old")
    old_log = (run_dir / "contnet.log").read_text()
    proc = cli_inprocess(["train", f"hydra.run.dir={run_dir}", *TINY, "seed=2", "trainer.overwrite=true"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = {p.name for p in run_dir.iterdir()}
    assert not names & {"adapter", "eval", "test_predictions.txt", "wandb"}, names
    assert "seed: 2" in (run_dir / ".hydra" / "config.yaml").read_text()
    log = (run_dir / "contnet.log").read_text()
    assert old_log not in log and log.strip()
    assert summary_of(run_dir)["seed"] == 2


def test_a_sweep_that_starts_over_removes_the_old_sweeps_extra_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    base = ["train", "-m", f"hydra.sweep.dir={sweep}", "trainer.max_steps=3", "trainer.eval_every=0",
            "trainer.progress=false", "model.width=8"]
    assert cli_inprocess([*base, "seed=0,1,2"], tmp_path).returncode == 0
    assert (sweep / "2" / "summary.json").exists()
    proc = cli_inprocess([*base, "seed=5", "trainer.overwrite=true"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0"]
    assert summary_of(sweep / "0")["seed"] == 5


def test_a_single_run_into_a_sweep_directory_and_a_sweep_into_a_run_directory_are_refused(tmp_path):
    sweep = tmp_path / "sweep"
    ok = cli_inprocess(["train", "-m", f"hydra.sweep.dir={sweep}", "seed=0,1", "trainer.max_steps=3",
                  "trainer.eval_every=0", "model.width=8"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    before = snapshot(sweep)
    single = cli_inprocess(["train", f"hydra.run.dir={sweep}", "trainer.max_steps=3"], tmp_path)
    assert single.returncode == 2 and "directory of a sweep" in single.stderr, single.stderr
    run_dir = tmp_path / "run"
    assert cli_inprocess(["train", f"hydra.run.dir={run_dir}", *TINY, "trainer.max_steps=3"], tmp_path).returncode == 0
    multi = cli_inprocess(["train", "-m", f"hydra.sweep.dir={run_dir}", "seed=0,1", "trainer.max_steps=3"], tmp_path)
    assert multi.returncode == 2 and "holds a single run" in multi.stderr, multi.stderr
    assert snapshot(sweep) == before


def test_report_finds_a_sweeps_jobs_even_beside_a_single_run_in_its_directory(tmp_path):
    """Directories an older contnet made: a single run's files at the root of a sweep's directory."""
    from contnet.report.runs import discover_run_dirs
    sweep = tmp_path / "sweep"
    for d in (sweep, sweep / "0", sweep / "1"):
        d.mkdir(parents=True, exist_ok=True)
        (d / "summary.json").write_text(json.dumps({"status": "completed"}))
    (sweep / "0" / "checkpoints").mkdir()
    assert [p.name for p in discover_run_dirs([sweep])] == ["sweep", "0", "1"]
    assert [p.name for p in discover_run_dirs([tmp_path])] == ["sweep", "0", "1"]


# ------------------------------------------------------------------------------------------ found by trying faults


@pytest.mark.parametrize("process", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_signal_during_the_first_write_is_acted_on_at_the_first_step(tmp_path, process):
    run_dir = tmp_path / "run"
    proc = signal_in("first_write", [signal.SIGTERM], [f"hydra.run.dir={run_dir}", *TINY], tmp_path, process=process)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    s = summary_of(run_dir)
    assert s["status"] == "interrupted" and s["steps"] == 1 and ckpt_step(run_dir) == 1
    assert (run_dir / ".hydra" / "config.yaml").exists() and (run_dir / ".hydra" / "hydra.yaml").exists()
    assert "interrupted by signal 15 at step 1" in proc.stderr


@pytest.mark.parametrize("process", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_signal_while_summary_json_is_written_still_stops_the_process(tmp_path, process):
    run_dir = tmp_path / "run"
    proc = signal_in("summary", [signal.SIGTERM], [f"hydra.run.dir={run_dir}", *TINY], tmp_path, process=process)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr      # a sweep would not start its next job
    assert "Traceback" not in proc.stderr
    assert summary_of(run_dir)["status"] == "completed" and summary_of(run_dir)["steps"] == 25


@pytest.mark.parametrize("process", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_sighup_is_a_signal_like_sigterm(tmp_path, process):
    run_dir = tmp_path / "run"
    proc = signal_in("final_eval", [signal.SIGHUP], [f"hydra.run.dir={run_dir}", *TINY], tmp_path, process=process)
    assert proc.returncode == 128 + signal.SIGHUP, proc.stderr
    assert summary_of(run_dir)["status"] == "interrupted" and ckpt_step(run_dir) == 25
    assert not (run_dir / ".contnet.lock").exists()


@pytest.mark.parametrize("process", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_two_quick_signals_before_any_checkpoint_then_resume_auto_starts_over(tmp_path, reference, process):
    run_dir = tmp_path / "run"
    proc = signal_in("final_eval", [signal.SIGINT], [f"hydra.run.dir={run_dir}", *TINY], tmp_path,
                     env={"SECOND_SIGNAL_IN": "contnet.engine.checkpoint:save"}, process=process)
    assert proc.returncode == 130 and not (run_dir / "checkpoints" / "last.pt").exists(), proc.stderr
    assert "no checkpoint was saved" in (run_dir / "contnet.log").read_text()
    again = cli_inprocess(["train", f"hydra.run.dir={run_dir}", *TINY, "trainer.resume=auto"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert curves(run_dir) == curves(reference[0])


@pytest.mark.parametrize("process", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_full_disk_names_the_file_and_the_fix(tmp_path, monkeypatch, process):
    run_dir = tmp_path / "run"
    proc = train_patched("contnet.engine.run", "atomic_write_json", FULL_DISK, [f"hydra.run.dir={run_dir}", *TINY],
                         tmp_path, monkeypatch, process)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert f"No space left on device writing {run_dir / 'summary.json'}; free some space, then continue with " \
           "trainer.resume=auto" in lines[0]
    assert ckpt_step(run_dir) == 25                        # the run's checkpoint is there to continue from


def test_metrics_jsonl_deleted_mid_run_is_written_back_and_a_resume_without_it_is_refused(tmp_path, monkeypatch,
                                                                                       reference):
    from contnet.engine import run as run_mod
    run_dir = tmp_path / "run"

    class DeleteAt:
        def log(self, record):
            if record.get("step") == 12 and "train/loss" in record:
                (run_dir / "metrics.jsonl").unlink()

        def summary(self, s):
            pass

        def close(self, status):
            pass
    make = run_mod.make_loggers
    monkeypatch.setattr(run_mod, "make_loggers", lambda *a, **k: [*make(*a, **k), DeleteAt()])
    assert run_inprocess(TINY, run_dir)["status"] == "completed"
    assert curves(run_dir) == curves(reference[0])          # every record, none lost
    monkeypatch.setattr(run_mod, "make_loggers", make)
    (run_dir / "summary.json").unlink()
    (run_dir / "metrics.jsonl").unlink()
    before = snapshot(run_dir)
    proc = cli_inprocess(["train", f"hydra.run.dir={run_dir}", *TINY, "trainer.resume=auto"], tmp_path)
    assert proc.returncode == 2 and "metrics.jsonl is missing" in proc.stderr, proc.stderr
    assert snapshot(run_dir) == before


def test_a_single_run_into_a_sweeps_job_folder_is_refused(tmp_path):
    sweep = tmp_path / "sweep"
    assert cli_inprocess(["train", "-m", f"hydra.sweep.dir={sweep}", "seed=0", "trainer.max_steps=3",
                          "trainer.eval_every=0", "model.width=8"], tmp_path).returncode == 0
    proc = cli_inprocess(["train", f"hydra.run.dir={sweep / '1'}", "trainer.max_steps=3"], tmp_path)
    assert proc.returncode == 2 and "is a job folder of the sweep" in proc.stderr, proc.stderr
    assert not (sweep / "1").exists()


def test_ctrl_c_in_contnet_report_is_one_line_and_leaves_no_half_written_report(tmp_path, monkeypatch):
    from contnet.report import render
    sweep = tmp_path / "sweep"
    assert cli_inprocess(["train", "-m", f"hydra.sweep.dir={sweep}", "seed=0,1", "trainer.max_steps=3",
                          "trainer.eval_every=0", "model.width=8"], tmp_path).returncode == 0
    before = (sweep / "report.md").read_bytes()

    def stopped(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(render, "write_csv", stopped)
    proc = cli_inprocess(["report", str(sweep)], tmp_path)
    assert proc.returncode == 130 and proc.stderr.strip().count("\n") == 0 and "stopped by signal 2" in proc.stderr
    assert (sweep / "report.md").read_bytes() in (before, (sweep / "report.md").read_bytes())
    assert not list(sweep.glob(".*.tmp"))
