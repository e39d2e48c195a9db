"""Tuning workers: N processes share one study through its storage (Optuna's journal file, or an RDB URL).

Every worker runs the same body (`work`): the trials of each arm in turn, while that arm's budget has room
(trials.tune_arm: one study per arm, every worker asks it), then per arm, once none of that arm's trials is
running, its share of the arm's final runs (every N-th of all the final runs, from its index).  A worker runs its
trials in its own process (runner.run_in_process); the study's process is worker 0 on one machine, so `--workers 1`
starts no process at all.

- `--workers N` on one machine: N − 1 more processes, forked at the command's start on Linux (they import torch and
  warm up while the study's process checks the study: `Forked`), else `python -m contnet.studies.workers <out> <i>
  <N>`; their output in <out>/worker<i>.log.
  The plan gives each worker cores // N torch threads where the preset leaves
  `trainer.threads` to torch, so N workers fit the machine.
- `--launcher slurm`: N Slurm array tasks through submitit (the study's process only waits);
  `--launcher submitit_local` runs the same through submitit's local executor (what the tests use).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from contnet.studies import runner, trials

PLAN = "plan.json"


def read_plan(out: Path) -> dict:
    return json.loads((Path(out) / PLAN).read_text())


def work(out: str | Path, index: int = 0, count: int = 1) -> int:
    """One worker's whole share of the study (see the module's docstring); returns the runs it made."""
    out = Path(out)
    plan = read_plan(out)
    storage = trials.open_storage(plan, out)
    ran = sum(trials.tune_arm(plan, out, storage, arm, index) for arm in plan["arms"])
    if plan.get("tune_only"):
        return ran
    seeds = len(plan["seeds"])
    for k, arm in enumerate(plan["arms"]):           # an arm's finals start once none of its trials runs
        while not trials.settled(storage, [arm]):    # (its best values are known then), the others' may still
            time.sleep(0.1)
        mine = [r for j, r in enumerate(arm_finals(plan, out, storage, arm)) if (k * seeds + j) % count == index]
        ran += sum(not runner.is_done(out / r.dir) for r in mine)
        runner.execute(mine, out, on_done=said, quiet=True)
    return ran


def said(run: runner.Run, summary: dict) -> None:
    final = summary.get("final") or {}
    print(f"[tune] {run.dir}: {summary.get('status')}, val/loss {final.get('val/loss', float('nan')):.5g}, "
          f"test/loss {final.get('test/loss', float('nan')):.5g}", flush=True)


def final_runs(plan: dict, out: Path, storage) -> list[runner.Run]:
    """One run per final seed per arm at the arm's best values (arms with no complete trial have none)."""
    return [r for arm in plan["arms"] for r in arm_finals(plan, out, storage, arm)]


def arm_finals(plan: dict, out: Path, storage, arm: str) -> list[runner.Run]:
    """The arm's final runs, one per seed, at its best values (none without a complete trial).  A run made at
    other values (more trials changed the best) is started over."""
    top = trials.best(trials.load_study(storage, arm).get_trials(deepcopy=False))
    if top is None:
        return []
    runs = [runner.Run(f"final/{arm}/seed{seed}", trials.arm_overrides(plan, arm, top.params), seed=seed, arm=arm,
                       extra={"kind": "final", "params": dict(top.params), "from_trial": top.number})
            for seed in plan["seeds"]]
    for r in runs:
        runner.forget_if_changed(r, out)
    return runs


def worker_env(threads: int | None) -> dict:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


class Forked:
    """A worker forked from this process (Linux) before it imports torch: while this process imports and checks
    the study, the worker imports what a trial needs (torch, its dynamo that the first optimizer step loads, the
    engine: ~3 s here), then waits for `start(out)` on a pipe; `cancel()` (the checks failed) ends it, having
    written nothing.  Its output goes to <out>/worker<i>.log.  Popen's wait/poll/terminate."""

    def __init__(self, index: int, count: int):
        import multiprocessing
        ctx = multiprocessing.get_context("fork")
        self._recv, self._send = ctx.Pipe(duplex=False)
        self.started = False
        self.proc = ctx.Process(target=_forked, args=(self._recv, self._send, index, count))
        self.proc.start()
        self._recv.close()              # the worker's end; a parent gone before the start gives the worker EOF

    def start(self, out: Path) -> "Forked":
        self._send.send(str(out))
        self.started = True
        return self

    def cancel(self) -> None:
        """Never started: killed (it has only imported); started: run_local has waited for it already."""
        if not self.started:
            self.proc.kill()
        self.proc.join()

    def wait(self) -> int:
        self.proc.join()
        return self.proc.exitcode

    def poll(self):
        return self.proc.exitcode

    def terminate(self) -> None:
        self.proc.terminate()


def _forked(conn, parent_end, index: int, count: int) -> None:
    parent_end.close()                   # so that the parent's death reads as EOF here, not a wait forever
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)                     # silent until started: the study's process speaks for the command
    os.dup2(null, 2)
    try:
        import torch._dynamo  # noqa: F401 - what the first optimizer step imports (torch.optim)
        import contnet.engine.run  # noqa: F401
        out = conn.recv()
    except BaseException:                # noqa: BLE001 - a signal or a closed pipe before the start: nothing to do
        out = None
    if out is None:
        os._exit(0)
    from contnet.cli.main import run_command
    fd = os.open(Path(out) / f"worker{index}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os._exit(run_command("tune (worker)", lambda: main([out, str(index), str(count)])))


def prestart(count: int) -> list[Forked]:
    """Workers 1..count-1 forked now, to be started by run_local (none where fork is not the way: see Forked)."""
    if count < 2 or not (hasattr(os, "fork") and sys.platform == "linux"):
        return []
    return [Forked(i, count) for i in range(1, count)]


def start_worker(out: Path, index: int, count: int, threads: int | None):
    with open(out / f"worker{index}.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "contnet.studies.workers", str(out), str(index), str(count)],
                                stdout=log, stderr=subprocess.STDOUT, env=worker_env(threads))


def run_local(out: Path, count: int, threads: int | None, forked: list[Forked] = ()) -> None:
    """Worker 0 here, workers 1..N-1 as processes (the `forked` ones started, else new interpreters); any that
    fails (or a signal here) stops the others."""
    procs = []
    try:
        procs = [f.start(out) for f in forked] or [start_worker(out, i, count, threads) for i in range(1, count)]
        work(out, 0, count)
        bad = [(i + 1, p.wait()) for i, p in enumerate(procs)]
        bad = [(i, rc) for i, rc in bad if rc != 0]
        if bad:
            raise RuntimeError(f"worker {bad[0][0]} exited with code {bad[0][1]}; see {out / f'worker{bad[0][0]}.log'}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()                  # SIGTERM: its running trial stops at a step, FAIL in the study
        for p in procs:
            p.wait()


SUBMITIT_PLAIN = ("timeout_min", "cpus_per_task", "mem_gb", "gpus_per_node", "nodes", "tasks_per_node", "name")


def run_submitit(out: Path, count: int, cluster: str, params: dict) -> None:
    """N array tasks through submitit (cluster "slurm", or "local": submitit's local executor); waits for all.
    `params`: submitit's own (timeout_min, cpus_per_task, mem_gb, …) or Slurm's (partition, account, … get the
    slurm_ prefix)."""
    import submitit
    ex = submitit.AutoExecutor(folder=str(out / "submitit"), cluster=cluster)
    named = {k if k in SUBMITIT_PLAIN or k.startswith("slurm_") else f"slurm_{k}": v for k, v in params.items()}
    ex.update_parameters(**{"timeout_min": 60, "cpus_per_task": 1, "slurm_array_parallelism": count, **named})
    jobs = ex.map_array(work, [str(out)] * count, list(range(count)), [count] * count)
    failed = []
    for i, job in enumerate(jobs):
        try:
            job.result()
        except Exception as e:                 # noqa: BLE001 - reported below as one line, with its log
            failed.append((i, e))
    if failed:
        i, e = failed[0]
        raise RuntimeError(f"array task {i} failed ({' '.join(str(e).split())[:200]}); see {out / 'submitit'}")


def main(argv: list[str] | None = None) -> int:
    """`python -m contnet.studies.workers <study folder> <index> <count>`: one local worker process."""
    out, index, count = (sys.argv[1:] if argv is None else argv)
    work(Path(out), int(index), int(count))
    return 0


if __name__ == "__main__":
    from contnet.cli.main import run_command
    sys.exit(run_command("tune (worker)", main))
