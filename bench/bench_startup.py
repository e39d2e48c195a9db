"""Start-up figures (issue 19, item 5), each against the `import torch` floor measured in the same run.

Every command is a fresh process; one round runs them all in turn (floor, `contnet --help`, `contnet train --help`,
the default `contnet train`), `--repeats` rounds after one warm-up round, so that a change in the machine's load
hits every figure alike.  Printed per figure: min / median / max wall seconds and CPU seconds (user + sys of the
process), the median ratio to the floor of the same round, and the goal:

    contnet --help            ≤ 0.2 s                  (reads conf/, imports no torch)
    contnet train --help      ≤ floor + 1 s
    contnet train (default)   ≤ floor + its training + 1 s   (training: summary.json's train_time_s)

Also shown: `import torch` plus building one torch.optim optimizer (torch imports its compiler front end,
torch._dynamo, on the first optimizer: a cost of every run that trains, whatever runs it, about as much again as
`import torch`), and the default run's goal against that effective floor.
On a shared machine quote the medians with the load (printed first)."""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
COMMANDS = {
    "import torch (floor)": [PY, "-c", "import torch"],
    "import torch + an optimizer": [PY, "-c", "import torch; torch.optim.Adam([torch.zeros(1, requires_grad=True)])"],
    "contnet --help": [PY, "-m", "contnet.cli.main", "--help"],
    "contnet train --help": [PY, "-m", "contnet.cli.main", "train", "--help"],
    "contnet train": [PY, "-m", "contnet.cli.main", "train"],          # + hydra.run.dir=<a new directory>
}


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one process running `cmd`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()[-500:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def one_round(work: Path, n: int) -> dict[str, tuple[float, float, float]]:
    """Each figure once: {name: (wall, cpu, training seconds or 0)}."""
    out = {}
    for name, cmd in COMMANDS.items():
        run_dir = work / f"run{n}"
        if name == "contnet train":
            cmd = [*cmd, f"hydra.run.dir={run_dir}"]
        wall, cpu = timed(cmd, work)
        training = json.loads((run_dir / "summary.json").read_text())["train_time_s"] if name == "contnet train" else 0
        out[name] = (wall, cpu, training)
    return out


def spread(values: list[float]) -> str:
    return f"{min(values):6.2f} {statistics.median(values):6.2f} {max(values):6.2f}"


def report(rounds: list[dict]) -> list[str]:
    """The table and the goals, from the measured rounds."""
    floor = [r["import torch (floor)"][0] for r in rounds]
    lines = [f"{'':30} {'wall s: min median max':>22}   {'cpu s: min median max':>22}   ratio to floor (median)"]
    for name in COMMANDS:
        walls, cpus = [r[name][0] for r in rounds], [r[name][1] for r in rounds]
        ratio = statistics.median(w / f for w, f in zip(walls, floor))
        lines.append(f"{name:30} {spread(walls):>22}   {spread(cpus):>22}   {ratio:5.2f}")
    med = {name: statistics.median(r[name][0] for r in rounds) for name in COMMANDS}
    training = statistics.median(r["contnet train"][2] for r in rounds)
    f = med["import torch (floor)"]
    o = med["import torch + an optimizer"]
    goals = [("contnet --help", med["contnet --help"], 0.2, "0.2 s"),
             ("contnet train --help", med["contnet train --help"], f + 1, f"floor + 1 s = {f + 1:.2f} s"),
             ("contnet train", med["contnet train"], f + training + 1,
              f"floor + training ({training:.2f} s) + 1 s = {f + training + 1:.2f} s"),
             ("contnet train (effective floor)", med["contnet train"], o + training + 1,
              f"torch + an optimizer + training + 1 s = {o + training + 1:.2f} s")]
    lines.append("")
    for name, got, goal, words in goals:
        lines.append(f"{name:30} median {got:6.2f} s   goal ≤ {words}: {'met' if got <= goal else 'NOT met'}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="counted rounds (after one warm-up round)")
    args = ap.parse_args()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs; "
          f"{args.repeats} rounds after a warm-up")
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        one_round(work, 0)
        rounds = [one_round(work, n) for n in range(1, args.repeats + 1)]
    print("\n".join(report(rounds)))


if __name__ == "__main__":
    main()
