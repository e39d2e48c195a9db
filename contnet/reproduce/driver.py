"""`contnet reproduce` (`make reproduce-paper`): run every paper claim's sweeps, report them, and write
outputs/reproduce/REPORT.md.

    contnet reproduce --scale cpu            # the 2-core suite (SCALE=cpu, the default)
    contnet reproduce --scale paper          # the authors' settings (CUDA, downloads; days)
    contnet reproduce --claims npacs,seq2d   # a subset
    contnet reproduce --report-only          # rebuild REPORT.md from the run folders already there
    contnet reproduce --smoke                # seconds: 4 tiny runs of one claim (tests)
    contnet reproduce --claims parc -- seed=0,1 trainer.max_steps=50   # overrides for every sweep

(`python -m contnet.reproduce ...` is the same command.)

Each sweep is `contnet train -m experiment=<preset>_<scale> hydra.sweep.dir=<out>/<claim>/<preset>` in its own
process (a crash stays inside its claim), then `contnet report` per claim into <out>/<claim>/report/, then
REPORT.md with our numbers beside the published ones and one verdict sentence per claim.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from contnet.models.seq2d.equivalence import equivalence_check  # claim (c)
from contnet.reproduce.claims import CLAIMS, Claim, Sweep
from contnet.reproduce.report import ClaimResult, analyse, write_report

REPO = Path(__file__).resolve().parents[2]
SWEEP_TIMEOUT_S = {"cpu": 1800, "paper": None, "smoke": 600}


@dataclass
class SweepRun:
    claim: Claim
    sweep: Sweep
    command: list[str]
    sweep_dir: Path
    log: Path
    rc: int | None = None
    seconds: float = 0.0
    error: str = ""
    skipped: str = ""                     # why it did not run (a method that has not landed)
    extra: dict = field(default_factory=dict)


def available_options() -> dict[str, list[str]]:
    from contnet.cli.main import config_groups
    return config_groups()


def missing(sweep: Sweep, scale: str, groups: dict[str, list[str]]) -> str:
    """'' when the preset and every method it needs exist in conf/, else a reason."""
    if f"{sweep.preset}_{scale}" not in groups.get("experiment", []):
        return f"preset experiment={sweep.preset}_{scale} does not exist"
    for need in sweep.needs:
        group, option = need.split("=", 1)
        if option not in groups.get(group, []):
            return f"{need} has not landed"
    return ""


def e2e_data_dir(explicit: str | None) -> str | None:
    """The E2E files: --e2e-dir, else $CONTNET_DATA/e2e, else a shared checkout next to the repo."""
    candidates = [explicit] if explicit else []
    if os.environ.get("CONTNET_DATA"):
        candidates.append(os.path.join(os.environ["CONTNET_DATA"], "e2e"))
    candidates.append(str(REPO.parent / "shared" / "data" / "e2e"))
    for c in candidates:
        if c and (Path(c) / "test.txt").is_file():
            return str(Path(c).resolve())
    return explicit


def plan(claims: list[Claim], scale: str, out: Path, smoke: bool, e2e_dir: str | None,
         overrides: Sequence[str] = ()) -> list[SweepRun]:
    groups = available_options()
    preset_scale = "cpu" if smoke else scale
    runs = []
    for claim in claims:
        sweeps = [s for s in claim.sweeps if preset_scale in s.scales]
        for sweep in sweeps[:1] if smoke else sweeps:
            sweep_dir = out / claim.key / sweep.preset
            if sweep.tuned:            # tuning per arm, then the final seeds under <sweep_dir>/final (contnet.tune)
                cmd = [sys.executable, "-m", "contnet.tune", f"experiment={sweep.preset}_{preset_scale}",
                       "--out", str(sweep_dir)]
            else:
                cmd = [sys.executable, "-m", "contnet.cli.main", "train", "-m",
                       f"experiment={sweep.preset}_{preset_scale}", f"hydra.sweep.dir={sweep_dir}",
                       "trainer.progress=false", "hydra.callbacks.report.enabled=false"]
            if claim.key == "solo" and e2e_dir:
                cmd.append(f"task.data_dir={e2e_dir}")
            if smoke:
                cmd += claim.smoke
            for o in overrides:            # the tune driver takes the final seeds as --seeds
                cmd += ["--seeds", o.split("=", 1)[1]] if sweep.tuned and o.startswith("seed=") else [o]
            runs.append(SweepRun(claim, sweep, cmd, sweep_dir, out / claim.key / f"{sweep.preset}.log",
                                 skipped=missing(sweep, preset_scale, groups)))
    return runs


def describe_tuned(preset: str, cfg) -> str:
    """'tuned: 4 arms (adam, …) × (12 Optuna trials on val/loss + 5 seeds on test), 600 steps of batch 200'."""
    from contnet.tune import plan_from
    plan = plan_from(cfg)
    tr = cfg.trainer
    length = f"{tr.max_steps} steps" if tr.get("max_steps") else f"{tr.max_epochs} epochs"
    return (f"`{preset}`: tuned, {len(plan['arms'])} arms ({', '.join(plan['arms'])}) × ({plan['trials']} Optuna "
            f"trials on val/loss + {len(plan['seeds'])} seeds on test), {length} of batch {tr.batch_size}")


def describe(preset: str) -> str:
    """'40 runs (task 2 × optimizer 4 × seed 5), 600 steps of batch 200' from the composed preset."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from contnet.conf import compose
    cfg = compose([f"experiment={preset}"], hydra_config=True)
    if "tune" in cfg:
        return describe_tuned(preset, cfg)
    params = dict(cfg.hydra.sweeper.params or {})
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    counts = [(o.key_or_group.split("/")[-1], len(list(o.sweep_iterator())) if o.is_sweep_override() else 1)
              for o in parsed]
    total = 1
    for _, n in counts:
        total *= n
    tr = cfg.trainer
    length = f"{tr.max_steps} steps" if tr.get("max_steps") else f"{tr.max_epochs} epochs"
    grid = " × ".join(f"{k} {n}" for k, n in counts)
    return f"`{preset}`: {total} run{'s' * (total != 1)} ({grid}), {length} of batch {tr.batch_size}"


def execute(run: SweepRun, env: dict, timeout: float | None) -> SweepRun:
    if run.skipped:
        return run
    run.sweep_dir.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(run.log, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(run.command) + "\n")
        log.flush()
        try:
            proc = subprocess.run(run.command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=timeout)
            run.rc = proc.returncode
            if proc.returncode != 0:
                run.error = f"the sweep exited with code {proc.returncode} (see {run.log.name})"
        except subprocess.TimeoutExpired:
            run.rc = 124
            run.error = f"the sweep ran past the {timeout:.0f} s limit and was stopped"
    run.seconds = time.monotonic() - start
    print(f"[reproduce] {run.claim.key}/{run.sweep.preset}: "
          f"{'ok' if run.rc == 0 else run.error} in {run.seconds:.0f} s", flush=True)
    return run


def schedule(runs: list[SweepRun], jobs: int, env: dict, timeout: float | None) -> None:
    """Longest first (the language-model sweep), the rest on the other worker(s)."""
    todo = sorted(runs, key=lambda r: r.claim.key != "solo")
    if jobs <= 1:
        for r in todo:
            execute(r, env, timeout)
        return
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(lambda r: execute(r, env, timeout), todo))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="contnet reproduce", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=["cpu", "paper"], default="cpu",
                   help="cpu: the 2-core suite (default); paper: the authors' settings")
    p.add_argument("--claims", default=",".join(c.key for c in CLAIMS),
                   help="comma-separated subset of: " + ", ".join(c.key for c in CLAIMS))
    p.add_argument("--out", default="outputs/reproduce", help="output folder (default outputs/reproduce)")
    p.add_argument("--jobs", type=int, default=None, help="sweeps run at once, an integer ≥ 1 (default: 2 at cpu "
                   "scale, each with 1 thread; 1 at paper scale, one GPU)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per sweep, > 0 (default: 1800 on cpu, none on "
                   "paper)")
    p.add_argument("--e2e-dir", default=None, help="folder with the E2E files (valid.txt, test.txt, ...)")
    p.add_argument("--smoke", action="store_true", help="a few seconds of the first claim only (cpu presets)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--report-only", action="store_true", help="rebuild REPORT.md from the runs already in --out")
    p.add_argument("overrides", nargs="*", help="Hydra overrides added to every sweep (e.g. seed=0,1 trainer.max_steps=50)")
    return p


def describe_budgets(runs: list, out: Path, args) -> None:
    """Each run's budget in words for REPORT.md (the preset's, then the overrides added)."""
    for r in runs:
        if r.skipped:
            continue
        try:
            r.extra["budget"] = describe(next(a for a in r.command if a.startswith("experiment=")).split("=", 1)[1])
            if r.sweep.tuned:
                r.extra["budget"] += f"; tuned values: `{r.sweep_dir.relative_to(out)}/report.md`"
            added = (r.claim.smoke if args.smoke else []) + list(args.overrides)
            if added:
                r.extra["budget"] += ", then " + " ".join(added)
        except Exception as e:  # noqa: BLE001 - only a description
            r.extra["budget"] = f"{r.sweep.preset}: ({e.__class__.__name__})"


def run_all(runs: list, args, scale_label: str) -> None:
    env = dict(os.environ)
    if args.scale == "cpu" or args.smoke:
        env.setdefault("OMP_NUM_THREADS", "1")     # 2 cores: one thread per sweep beats oversubscription
        env.setdefault("MKL_NUM_THREADS", "1")
    env.setdefault("HYDRA_FULL_ERROR", "1")
    timeout = args.timeout if args.timeout is not None else SWEEP_TIMEOUT_S[scale_label]
    jobs = args.jobs if args.jobs is not None else (2 if args.scale == "cpu" or args.smoke else 1)
    schedule(runs, jobs, env, timeout)


def recorded_wall(out: Path, wall: float, report_only: bool, scale_label: str) -> float | None:
    """The wall time of the run that made the results (kept in timing.json: a --report-only rebuild reuses it)."""
    timing = out / "timing.json"
    if not report_only:
        timing.write_text(json.dumps({"wall_s": round(wall, 1), "scale": scale_label}), encoding="utf-8")
        return wall
    try:
        return float(json.loads(timing.read_text(encoding="utf-8"))["wall_s"])
    except (OSError, ValueError, KeyError):
        return None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    bad = (f"--jobs {args.jobs}: must be an integer ≥ 1 (the number of sweeps run at once)"
           if args.jobs is not None and args.jobs < 1 else
           f"--timeout {args.timeout:g}: must be a number of seconds > 0 (leave it out for the scale's default)"
           if args.timeout is not None and not args.timeout > 0 else None)
    if bad:
        print(f"contnet reproduce: error: {bad}", file=sys.stderr)
        return 2
    keys = [k.strip() for k in args.claims.split(",") if k.strip()]
    unknown = [k for k in keys if k not in {c.key for c in CLAIMS}]
    if unknown:
        print(f"reproduce: unknown claim(s) {', '.join(unknown)}; choose from {', '.join(c.key for c in CLAIMS)}",
              file=sys.stderr)
        return 2
    claims = [c for c in CLAIMS if c.key in keys][: 1 if args.smoke else None]
    out = Path(args.out).resolve()
    scale_label = "smoke" if args.smoke else args.scale
    runs = plan(claims, args.scale, out, args.smoke, e2e_data_dir(args.e2e_dir), args.overrides)
    if args.dry_run:
        for r in runs:
            print(("# skipped: " + r.skipped + "\n# ") * bool(r.skipped) + " ".join(r.command))
        return 0

    describe_budgets(runs, out, args)
    start = time.monotonic()
    if not args.report_only:
        run_all(runs, args, scale_label)
    extras: dict[str, dict] = {}
    if any(c.key == "seq2d" for c in claims):
        try:
            extras["seq2d"] = {"equivalence": equivalence_check()}
        except Exception as e:  # noqa: BLE001 - a failed check is reported, never fatal
            extras["seq2d"] = {"equivalence_error": f"{e.__class__.__name__}: {e}"}
    results: list[ClaimResult] = []
    for claim in CLAIMS:
        mine = [r for r in runs if r.claim.key == claim.key]
        results.append(analyse(claim, mine, out, extras.get(claim.key, {}),
                               selected=claim in claims, scale=scale_label))
    wall = time.monotonic() - start
    run_wall = recorded_wall(out, wall, args.report_only, scale_label)
    path = write_report(results, out, scale=scale_label, wall_s=run_wall,
                        argv=["contnet", "reproduce", *(argv if argv is not None else sys.argv[1:])])
    print(f"[reproduce] wrote {path} ({wall / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
