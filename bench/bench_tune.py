"""Tuning benchmarks (issue 20's goals); raw results in the artifact format (contnet/studies/artifact.py):

    python bench/bench_tune.py pruners  --results docs/results/tune_digits_ae/pruners
    python bench/bench_tune.py compare  --results docs/results/tune_digits_ae/compare --old-root DIR --old-sha SHA
    python bench/bench_tune.py workers  --results docs/results/tune_digits_ae/workers

- pruners: `contnet tune experiment=tune_digits_ae --pruner P` for each pruner (none, median, successive_halving,
  hyperband), the same budget in full-run equivalents; each study's runs.jsonl, meta.json and report.md are kept
  in <results>/<P>/, and a table compares the tuned values, the budget spent, the trials and the verdict.
- compare: `make compare-digits-ae` old (`python -m contnet.tune experiment=tune_digits_ae` in a checkout of the
  old tree, --old-root; its Optuna 2.10 stack on --old-path) against new (`contnet tune experiment=tune_digits_ae`
  with the Makefile's flags), interleaved, --repeats times; one row per command with its wall time, `uptime`'s
  load before and after, and the verdict of its final seeds.
- workers: a 16-trial study (one arm, tuning only, no pruner) with 1 and with 2 local workers, interleaved.
- tables: docs/tuning.md's two results tables rendered from the committed raw results under --results (the
  tune_digits_ae folder) as `table-<name>.json`, which `contnet tables` puts into the doc: `tuning-pruners` in
  pruners/ (from each pruner's study and the bench's rows), `tuning-cost` beside the sets (compare*, workers*).
  `pruners` writes its own table when it ends.

Each command runs as its own process (as a user runs it); medians are printed.  Study folders go to --work
(default outputs/bench_tune/, git-ignored).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRUNERS = ("none", "median", "successive_halving", "hyperband")
NEW = ["-m", "contnet.cli.main", "tune", "experiment=tune_digits_ae"]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def cpu_children() -> float:
    import resource
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(cmd: list[str], env: dict | None = None, cwd: Path = REPO) -> dict:
    """Run a command; its wall time, the CPU time of it and its processes (less sensitive than the wall time to
    what else runs on the machine), exit code and the load (uptime) before and after."""
    before, t0, c0 = uptime(), time.monotonic(), cpu_children()
    rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall, cpu = time.monotonic() - t0, cpu_children() - c0
    if rc.returncode != 0:
        print(rc.stderr[-2000:], file=sys.stderr)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "rc": rc.returncode, "uptime_start": before,
            "uptime_end": uptime()}


def final_rows(study: Path) -> list[dict]:
    """The study's final runs as artifact rows (the new tuner's runs.jsonl, or the old layout's folders)."""
    from contnet.studies import artifact
    if (study / artifact.RUNS).is_file():
        return [r for r in artifact.read_rows(study) if r.get("kind") == "final"]
    return [artifact.run_row(d, study, arm=d.parent.name) for d in sorted(study.glob("final/*/seed*"))]


def verdict(rows: list[dict], metric: str = "test/loss") -> dict:
    """Mean ± std of `metric` per arm over the final seeds, the lower arm and Welch's two-sided p."""
    from scipy.stats import ttest_ind
    per = {}
    for r in rows:
        v = (r.get("final") or {}).get(metric)
        if r.get("status") == "completed" and v is not None and math.isfinite(v):
            per.setdefault(r["arm"], []).append(v)
    stats = {a: [statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v)] for a, v in per.items()}
    if len(per) != 2:
        return {metric: stats}
    a, b = sorted(per)
    p = float(ttest_ind(per[a], per[b], equal_var=False).pvalue)
    lower = min(stats, key=lambda k: stats[k][0])
    return {metric: stats, "lower": lower, "welch_p": round(p, 6), "significant_5pct": p < 0.05}


def write(results: Path, rows: list[dict], command: str, env: dict, t0: float, **extra) -> None:
    from contnet.studies import artifact
    artifact.write(results, rows, command, env, time.monotonic() - t0, **extra)


def keep_study(study: Path, dest: Path) -> None:
    """A study's raw results (runs.jsonl, meta.json, report.md) without its run folders."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("runs.jsonl", "meta.json", "report.md"):
        shutil.copy(study / name, dest / name)


def pruners(args) -> list[dict]:
    rows = []
    for p in args.pruners.split(","):
        study = args.work / "pruners" / p
        shutil.rmtree(study, ignore_errors=True)
        row = timed([sys.executable, *NEW, "--pruner", p, "--out", str(study)])
        meta = json.loads((study / "meta.json").read_text())
        rows.append({"run": p, "arm": p, "seed": None, "status": "completed" if row["rc"] == 0 else "failed", **row,
                     "tuned": meta["tuned"], "verdict": verdict(final_rows(study)),
                     "val_verdict": verdict(final_rows(study), "val/loss")})
        keep_study(study, args.results / p)
        print(json.dumps(rows[-1]), flush=True)
    return rows


def compare(args) -> list[dict]:
    if not args.old_root or len(args.old_root) != len(args.old_sha or []):
        raise SystemExit("compare: give --old-root (an import root of the old tree: contnet/ with conf/ and cli/) "
                         "and its --old-sha, once per old tree")
    variants = {}
    for root, sha in zip(args.old_root, args.old_sha):      # one old tree: "old"; several: "old_<sha>"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *filter(None, [args.old_path])])}
        name = "old" if len(args.old_root) == 1 else f"old_{sha}"
        variants[name] = ([sys.executable, "-m", "contnet.tune", "experiment=tune_digits_ae"], env, root)
    variants.update({f"new_w{w}": ([sys.executable, *NEW, "--workers", str(w)], None, REPO)
                     for w in map(int, args.workers.split(","))})
    if args.also_unpruned:                     # the runner's gain alone: every trial to its end, as the old driver
        variants["new_nopruner_w1"] = ([sys.executable, *NEW, "--workers", "1", "--pruner", "none"], None, REPO)
    rows = []
    for rep in range(args.repeats):
        for name, (cmd, env, cwd) in variants.items():
            study = args.work / "compare" / f"{name}_rep{rep}"
            shutil.rmtree(study, ignore_errors=True)
            row = timed([*cmd, "--out", str(study)], env, cwd)
            rows.append({"run": f"{name}/rep{rep}", "arm": name, "seed": rep, **row,
                         "status": "completed" if row["rc"] == 0 else "failed", "verdict": verdict(final_rows(study))})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def trial_training(study: Path) -> dict:
    """The trials' own training seconds (summary.json's train_time_s, no start-up): their median and sum, to tell
    the workers' contention for the machine from the start-up that does not split between them."""
    from contnet.studies import artifact
    try:
        times = [r["train_time_s"] for r in artifact.read_rows(study) if r.get("train_time_s") is not None]
    except (OSError, ValueError):
        return {}
    return {"trial_train_s_median": round(statistics.median(times), 3), "trial_train_s_sum": round(sum(times), 2)} \
        if times else {}


def workers(args) -> list[dict]:
    rows = []
    for rep in range(args.repeats):
        for w in map(int, args.workers.split(",")):
            study = args.work / "workers" / f"w{w}_rep{rep}"
            shutil.rmtree(study, ignore_errors=True)
            row = timed([sys.executable, *NEW, "--arms", "cadam", "--trials", "16", "--tune-only", "--pruner", "none",
                         "--workers", str(w), "--out", str(study)])
            rows.append({"run": f"w{w}/rep{rep}", "arm": f"workers{w}", "seed": rep, **row,
                         "status": "completed" if row["rc"] == 0 else "failed", **trial_training(study)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


# ---- docs/tuning.md's tables, from the committed rows ---------------------------------------------------------

ARMS = {"adam": "Adam", "cadam": "C-Adam"}
PRUNER_NAMES = {"successive_halving": "successive halving", "hyperband": "Hyperband"}
COST_SETS = ("workers_0dc5b3d", "workers_0dc5b3d_b", "workers_0dc5b3d_c", "compare_startup", "workers_startup",
             "compare_9abab13", "workers_9abab13", "compare_idle", "workers_idle", "compare", "compare_cpu",
             "compare_w2", "workers_spawn", "workers")


def load1(uptime_line: str) -> float:
    """The 1-minute load average of an `uptime` line."""
    return float(uptime_line.rsplit("load average:", 1)[1].split(",")[0])


def _arm_finals(study: Path, metric: str) -> dict[str, list[float]]:
    per: dict[str, list[float]] = {}
    for r in final_rows(study):
        v = (r.get("final") or {}).get(metric)
        if r.get("status") == "completed" and v is not None and math.isfinite(v):
            per.setdefault(r["arm"], []).append(v)
    return per


def _pruner_verdict(test: dict[str, list[float]]) -> str:
    """C-Adam vs Adam on the final seeds' test loss, worded by Welch's t-test at the claims' level."""
    from contnet.report.stats import LEVEL, mean_std, welch
    p, (ma, mc) = welch(test["cadam"], test["adam"]), (mean_std(test[a])[0] for a in ARMS)
    if not p < LEVEL:
        return f"no difference at {LEVEL:.0%} (p = {p:.2g})"
    lower = "C-Adam" if mc < ma else "Adam"
    return f"{lower} lower ({mc:.5f} vs {ma:.5f}), p = {p:.2g}"


def pruner_row(bench_row: dict, study: Path) -> list[str]:
    """One pruner: each arm's trials and spent budget (its study's meta.json), the final seeds' val/loss mean ±
    std per arm and their sum (the selection rule), the test-loss verdict, the bench's wall time and load."""
    from contnet.report.stats import mean_std
    tuned = json.loads((study / "meta.json").read_text())["tuned"]
    val, test = _arm_finals(study, "val/loss"), _arm_finals(study, "test/loss")
    counts = {a: f"{t['counts']['complete']} / {t['counts']['pruned']}, {t['spent_full_runs']:g}"
              for a, t in tuned.items()}
    stats = {a: mean_std(val[a]) for a in ARMS}
    return [PRUNER_NAMES.get(bench_row["arm"], bench_row["arm"]),
            f"{counts['adam']}, lr {tuned['adam']['values']['optimizer.lr']:.3g}", counts["cadam"],
            *(f"{stats[a][0]:.5f} ± {stats[a][1]:.5f}" for a in ARMS), f"{sum(s[0] for s in stats.values()):.5f}",
            _pruner_verdict(test), f"{bench_row['wall_s']:.0f} ({load1(bench_row['uptime_start']):.2f})"]


def pruner_table(results: Path) -> dict:
    from contnet.studies import artifact
    rows = sorted(artifact.read_rows(results), key=lambda r: PRUNERS.index(r["arm"]))
    return {"header": ["pruner", "Adam: complete / pruned trials, budget spent, tuned lr",
                       "C-Adam: complete / pruned, spent", "final val/loss, Adam", "final val/loss, C-Adam", "sum",
                       "test/loss verdict (Welch, 5 seeds a side)", "wall time (s), load at start"],
            "rows": [pruner_row(r, results / r["arm"]) for r in rows],
            "numeric": [False, False, False, True, True, True, False, True]}


def _cost_verdict(rows: list[dict]) -> str:
    verdicts = [r["verdict"] for r in rows if r.get("verdict")]
    if not verdicts:
        return "–"
    lower = {v.get("lower") for v in verdicts}
    if len(lower) != 1 or not all(v.get("significant_5pct") for v in verdicts):
        return "differs between repeats: " + ", ".join(f"{v.get('lower')} p = {v.get('welch_p'):.2g}" for v in verdicts)
    return f"{lower.pop()} lower, p ≤ {max(v['welch_p'] for v in verdicts):.2g}"


def cost_rows(name: str, rows: list[dict]) -> list[list[str]]:
    """One line per variant of a set: its repeats' wall times and loads (start–end), the medians, the verdicts."""
    walls, cpus, trained = medians(rows), medians(rows, "cpu_s"), medians(rows, "trial_train_s_median", 2)
    out = []
    for arm in sorted(walls):
        mine = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["seed"])
        out.append([name, arm, ", ".join(f"{r['wall_s']:.0f}" for r in mine), f"{walls[arm]:.1f}",
                    f"{cpus[arm]:.0f}" if arm in cpus else "–", f"{trained[arm]:.2f}" if arm in trained else "–",
                    ", ".join(f"{load1(r['uptime_start']):.2f}–{load1(r['uptime_end']):.2f}" for r in mine),
                    _cost_verdict(mine)])
    return out


def cost_table(results: Path) -> dict:
    from contnet.studies import artifact
    return {"header": ["set", "variant", "wall (s) per repeat", "median wall (s)", "median CPU (s)",
                       "a trial's training, median (s)", "load, start–end",
                       "verdict of the final seeds (Welch's t-test, test/loss)"],
            "rows": [line for name in COST_SETS for line in cost_rows(name, artifact.read_rows(results / name))],
            "numeric": [False, False, False, True, True, True, False, False]}


def write_table(folder: Path, name: str, table: dict) -> Path:
    from contnet.studies import artifact
    path = folder / f"table-{name}.json"
    artifact.atomic_write_bytes(path, (json.dumps(table, ensure_ascii=False, indent=1) + "\n").encode())
    return path


def tables(args) -> None:
    print(write_table(args.results / "pruners", "tuning-pruners", pruner_table(args.results / "pruners")))
    print(write_table(args.results, "tuning-cost", cost_table(args.results)))


def medians(rows: list[dict], key: str = "wall_s", digits: int = 1) -> dict:
    by = {}
    for r in rows:
        if r["rc"] == 0 and r.get(key) is not None:
            by.setdefault(r["arm"], []).append(r[key])
    return {a: round(statistics.median(v), digits) for a, v in by.items()}


def main(argv: list[str] | None = None) -> int:
    from contnet.studies import artifact
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("pruners", "compare", "workers", "tables"))
    p.add_argument("--results", type=Path, required=True, help="where runs.jsonl + meta.json go")
    p.add_argument("--work", type=Path, default=REPO / "outputs" / "bench_tune")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--pruners", default=",".join(PRUNERS))
    p.add_argument("--workers", default=None, help="worker counts (compare: 1,2; workers: 1,2)")
    p.add_argument("--also-unpruned", action="store_true", help="compare: also the new tuner with --pruner none")
    p.add_argument("--old-root", type=Path, action="append", help="an old tree's import root (repeatable)")
    p.add_argument("--old-path", default=None, help="extra import path for the old tree (its Optuna 2.10 stack)")
    p.add_argument("--old-sha", action="append", help="each --old-root's commit, in order (recorded in meta.json)")
    args = p.parse_args(argv)
    args.workers = args.workers or "1,2"
    if args.what == "tables":
        tables(args)
        return 0
    env, t0 = artifact.environment(), time.monotonic()
    rows = {"pruners": pruners, "compare": compare, "workers": workers}[args.what](args)
    given = argv if argv is not None else sys.argv[1:]
    command = "python bench/bench_tune.py " + " ".join("<path>" if a.startswith("/") else a for a in given)
    write(args.results, rows, command, env, t0, medians_s=medians(rows), cpu_medians_s=medians(rows, "cpu_s"),
          old_git_sha=args.old_sha)
    if args.what == "pruners":
        write_table(args.results, "tuning-pruners", pruner_table(args.results))
    print(json.dumps(medians(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
