"""The studies behind the docs' tables, each rerun by one command through the current code (issue 20, item 4).

    python -m contnet.studies.docs_studies seq2d_skips|predictor [--seeds 5] [--set key=value ...]
                                           [--runs outputs/studies] [--results docs/results] [--trials N]

A study is a list of runner.Run (config overrides + seed + arm); runner.execute trains what is missing in this
process (a rerun does no work) and the artifact rows go to `<results>/<study>/runs.jsonl` with `meta.json`
(artifact.py), which the docs' tables are rendered from.  The run folders (checkpoints, metrics) stay out of git,
under `<runs>/<study>/`; a row's `run` is relative to that folder and meta.json's `runs_dir` names it.

Studies:
- `seq2d_skips` (docs/results/seq2d.md, "Comparison: mlp vs seq2d(mlp) vs seq2d(dense skips) vs seq2d(resnet)";
  README's Sequential2D summary): digits and mnist1d, the default trainer (Adam 1e-3, batch 64, 20 epochs),
  4 arms at matched parameter budgets x 5 seeds.  Rows add `trainable_params` (the table's last column).

- `predictor` (docs/results/continuation.md, "Tuned: the predictor (ratio_mode)"): the tuned study of
  conf/experiment/tune_ratio_mode.yaml on digits_ae and mnist1d_ae, each through `contnet tune` (its budget, pruner
  and final seeds are the preset's) into `<runs>/predictor/<task>/`; its runs.jsonl, meta.json (plus `runs_dir` and
  this command) and report.md are copied to `<results>/predictor/<task>/`.

The timing and BatchNorm tables have their own scripts, since they measure pieces rather than train runs:
bench/bench_checkpoint.py (docs/reliability.md) and bench/bn_eval_stats.py (docs/results/gpu.md).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from contnet.engine.io import atomic_write_bytes, atomic_write_json
from contnet.errors import ConfigError
from contnet.studies import artifact, runner
from contnet.studies.runner import Run

PROG = "python -m contnet.studies.docs_studies"
COMMON = ("trainer.progress=false", "trainer.plot=false")      # no curves.png: `contnet report` draws them

SEQ2D_TASKS = ("digits", "mnist1d")
# arm -> overrides per task: widths chosen so each arm's trainable parameters are within ±3 % of the MLP's
SEQ2D_ARMS: dict[str, Callable[[str], list[str]]] = {
    "mlp": lambda task: ["model=mlp"],
    "seq2d(mlp)": lambda task: ["model=seq2d"],
    "seq2d(dense)": lambda task: ["model=seq2d", "model.pattern=dense",
                                  f"model.width={100 if task == 'digits' else 108}"],
    "seq2d(resnet)": lambda task: ["model=seq2d", "model.pattern=resnet", "model.width=96", "model.depth=1"],
}


def _slug(arm: str) -> str:
    return arm.replace("(", "-").replace(")", "")


def seq2d_skips(seeds: Sequence[int], extra: Sequence[str]) -> list[Run]:
    return [Run(f"{task}/{_slug(arm)}/s{seed}", [f"task={task}", *overrides(task), *COMMON, *extra], seed, arm)
            for task in SEQ2D_TASKS for arm, overrides in SEQ2D_ARMS.items() for seed in seeds]


@dataclass(frozen=True)
class Study:
    runs: Callable[[Sequence[int], Sequence[str]], list[Run]]
    summary_fields: tuple[str, ...]     # summary.json keys each row carries besides the artifact's own
    budget: str                         # what one run is, for meta.json


STUDIES = {
    "seq2d_skips": Study(seq2d_skips, ("trainable_params",),
                         "default trainer: Adam lr 1e-3, batch 64, 20 epochs (380 steps digits, 1080 mnist1d)"),
}


# tuned studies: name -> (tuning preset, tasks); each task is one `contnet tune` study
TUNED = {"predictor": ("tune_ratio_mode", ("digits_ae", "mnist1d_ae"))}
COPIED = (artifact.RUNS, "report.md")      # what goes from a tuning study's folder to docs (plus meta.json)


def check(runs: Sequence[Run]) -> None:
    """Compose and validate every distinct run config before anything is written (ConfigError names the run)."""
    from contnet.conf import compose
    from contnet.engine.run import resolve_auto
    from contnet.validation import validate
    for r in {tuple(r.overrides): r for r in runs}.values():
        try:
            cfg = compose(r.command())
            resolve_auto(cfg)                   # as run() does before it validates
            validate(cfg)
        except Exception as e:          # Hydra's override and composition errors have no common base
            msg = " ".join(str(e).split())
            raise ConfigError(f"{r.dir}: {msg} (fix the --set override or the study's definition)") from e


def with_summary(rows: list[dict], root: Path, fields: Sequence[str]) -> list[dict]:
    """Each row plus the summary.json fields the study's table shows (None where a run wrote no summary)."""
    for row in rows:
        path = root / row["run"] / "summary.json"
        s = json.loads(path.read_text()) if path.exists() else {}
        row.update({f: s.get(f) for f in fields})
    return rows


def _progress(r: Run, summary: dict) -> None:
    final = summary.get("final", {})
    shown = " ".join(f"{k} {final[k]:.4f}" for k in ("val/acc", "val/loss") if k in final)
    print(f"{r.dir}: {summary.get('status')} {shown} ({summary.get('wall_time_s')} s)", flush=True)


def _quiet_run(run: Run, root: Path) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):      # the run's own summary table: one line instead
        return runner.run_in_process(run, root)


def portable(path: Path) -> str:
    """`path` as meta.json may record it: relative to the working directory, else its name only."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def summarize(rows: Sequence[dict], keys: Sequence[str] = ("val/acc", "val/loss")) -> list[str]:
    """mean ± sample std over seeds per (task, arm): a look at the numbers (the docs' table has its renderer)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["choices"]["task"], row["arm"]), []).append(row)
    lines = []
    for (task, arm), rs in groups.items():
        done = [r for r in rs if r["status"] == "completed"]
        cells = []
        for k in keys:
            v = [r["final"][k] for r in done if k in r["final"]]
            cells.append(f"{k} {statistics.mean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.4f}"
                         if v else f"{k} —")
        lines.append(f"{task} {arm} {len(done)}/{len(rs)}: " + ", ".join(cells))
    return lines


def run_study(name: str, seeds: Sequence[int], extra: Sequence[str], runs_root: Path, results: Path,
              command: str) -> Path:
    """Run the study (what is missing), then write its artifact; returns the results folder."""
    study = STUDIES[name]
    runs = study.runs(seeds, extra)
    check(runs)
    env, t0 = artifact.environment(), time.perf_counter()
    root = runs_root / name
    rows = with_summary(runner.execute(runs, root, do=_quiet_run, on_done=_progress), root, study.summary_fields)
    out = results / name
    out.mkdir(parents=True, exist_ok=True)
    artifact.write(out, rows, command, env, time.perf_counter() - t0, study=name, seeds=list(seeds),
                        extra_overrides=list(extra), budget=study.budget, runs_dir=portable(root))
    print("\n".join(summarize(rows)))
    return out


def run_tuned(name: str, args: argparse.Namespace, command: str) -> int:
    """Each task's `contnet tune` study (what is missing), then its artifact copied to <results>/<name>/<task>/."""
    from contnet.studies import tune
    preset, tasks = TUNED[name]
    for task in tasks:
        out = args.runs / name / task
        argv = [f"experiment={preset}", f"task={task}", "--out", str(out),
                "--seeds", ",".join(str(s) for s in range(args.seeds)),
                *(["--trials", str(args.trials)] if args.trials else []), *(["--", *args.extra] if args.extra else [])]
        code = tune.main(argv)
        if code:
            return code
        dest = args.results / name / task
        dest.mkdir(parents=True, exist_ok=True)
        for f in COPIED:
            atomic_write_bytes(dest / f, (out / f).read_bytes())
        meta = artifact.read_meta(out)
        meta.update(command=command, tune_command=f"contnet tune {' '.join(argv)}", runs_dir=portable(out))
        atomic_write_json(dest / artifact.META, meta)
        print(f"wrote {dest / artifact.RUNS} and {dest / artifact.META}")
    return 0


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("study", choices=sorted([*STUDIES, *TUNED]))
    ap.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5, the docs' tables)")
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="an extra config override for every run (repeatable), e.g. trainer.max_steps=50")
    ap.add_argument("--trials", type=int, help="a tuned study's budget per arm in full runs (default: the preset's)")
    ap.add_argument("--runs", type=Path, default=Path("outputs/studies"), help="run folders (default %(default)s)")
    ap.add_argument("--results", type=Path, default=Path("docs/results"),
                    help="where <study>/runs.jsonl + meta.json go (default %(default)s)")
    args = ap.parse_args(argv)
    if args.seeds < 1:
        ap.error(f"--seeds {args.seeds}: give at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    command = " ".join([PROG, *argv])
    if args.study in TUNED:
        return run_tuned(args.study, args, command)
    try:
        out = run_study(args.study, range(args.seeds), args.extra, args.runs, args.results, command)
    except ConfigError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out / artifact.RUNS} and {out / artifact.META}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
