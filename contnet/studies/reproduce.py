"""`contnet reproduce` (`make reproduce-paper`): every paper claim's sweeps on the study runner, then the raw
results (runs.jsonl + meta.json, contnet.studies.artifact) and REPORT.md beside them in --out.

    contnet reproduce --scale cpu            # the 2-core suite (SCALE=cpu, the default)
    contnet reproduce --scale paper          # the authors' settings (CUDA, downloads; days)
    contnet reproduce --claims npacs,seq2d   # a subset
    contnet reproduce --report-only          # rebuild REPORT.md from --out's runs.jsonl and meta.json
    contnet reproduce --smoke                # seconds: a tiny tuned claim (tests)
    contnet reproduce --claims parc -- seed=0,1 trainer.max_steps=50   # overrides for every sweep

A plain sweep is its preset's `hydra.sweeper.params` expanded into runs (the runs `contnet train -m
experiment=<preset>_<scale>` would make; command-line values replace the preset's), run in this process by
contnet.studies.runner into <out>/<claim>/<preset>/<job>/: a rerun does only what is missing.  A tuned sweep
(conf/experiment/tune_*.yaml) goes to the tuner, which tunes each arm and then runs its final seeds.  Then REPORT.md:
our numbers beside the published ones and one verdict sentence per claim (contnet.studies.claims).
"""
from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from contnet.studies import artifact, runner
from contnet.studies.claims import CLAIMS, Claim, Sweep
from contnet.studies.reproduce_report import write_report

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Job:
    """One sweep of one claim: its runs (a plain sweep) or its tuner arguments (a tuned one)."""
    claim: Claim
    sweep: Sweep
    preset: str                           # <preset>_<scale>
    dir: str                              # <claim>/<preset>, relative to --out
    runs: list = field(default_factory=list)
    tune_args: list = field(default_factory=list)
    skipped: str = ""                     # why it does not run (a method that has not landed)
    info: dict = field(default_factory=dict)   # budget, command, seconds, error: REPORT.md's lines


def missing(sweep: Sweep, preset: str, groups: dict[str, list[str]]) -> str:
    """'' when the preset and every method it needs exist in conf/, else a reason."""
    if preset not in groups.get("experiment", []):
        return f"preset experiment={preset} does not exist"
    return next((f"{need} has not landed" for need in sweep.needs
                 if need.split("=", 1)[1] not in groups.get(need.split("=", 1)[0], [])), "")


def e2e_data_dir(explicit: str | None) -> str | None:
    """The E2E files: --e2e-dir, else $CONTNET_DATA/e2e, else a shared checkout next to the repo."""
    candidates = [explicit, os.path.join(os.environ["CONTNET_DATA"], "e2e") if os.environ.get("CONTNET_DATA")
                  else None, str(REPO.parent / "shared" / "data" / "e2e")]
    return next((str(Path(c).resolve()) for c in candidates if c and (Path(c) / "test.txt").is_file()), explicit)


def expand(preset: str, overrides: Sequence[str]) -> list[list[str]]:
    """The jobs of `contnet train -m experiment=<preset> <overrides>`: the preset's sweep params with the command
    line's values in their place, as Hydra's basic sweeper orders them (the last key varies fastest)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from contnet.conf import compose
    params = dict(compose([f"experiment={preset}"], hydra_config=True).hydra.sweeper.params or {})
    for o in OverridesParser.create().parse_overrides(list(overrides)):
        params[o.key_or_group] = o.get_value_element_as_str() if not o.is_sweep_override() else \
            ",".join(str(v) for v in o.sweep_iterator())
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    axes = [[f"{o.key_or_group}={v}" for v in (o.sweep_iterator() if o.is_sweep_override() else [o.value()])]
            for o in parsed]
    return [list(job) for job in itertools.product(*axes)]


def plain_runs(job: Job, extra: Sequence[str], overrides: Sequence[str]) -> list:
    runs = []
    for i, overs in enumerate(expand(job.preset, overrides)):
        seed = next((int(o.split("=", 1)[1]) for o in overs if o.startswith("seed=")), 0)
        rest = [o for o in overs if not o.startswith("seed=")]
        runs.append(runner.Run(f"{job.dir}/{i}", [f"experiment={job.preset}", *rest, *extra], seed))
    return runs


def tune_args(job: Job, extra: Sequence[str], overrides: Sequence[str], smoke: bool) -> list[str]:
    """The tuner's command line: final seeds from a `seed=` override, every other override as given."""
    seeds = [a for o in overrides if o.startswith("seed=") for a in ("--seeds", o.split("=", 1)[1])]
    return [f"experiment={job.preset}", *(job.claim.smoke if smoke else []), *seeds,
            *[o for o in overrides if not o.startswith("seed=")], *extra]


def plan(claims: list[Claim], scale: str, smoke: bool, e2e_dir: str | None, overrides: Sequence[str] = ()) -> list[Job]:
    from contnet.cli.main import config_groups
    groups, at = config_groups(), "cpu" if smoke else scale
    jobs = []
    for claim in claims:
        sweeps = [s for s in claim.sweeps if at in s.scales]
        for sweep in sweeps[:1] if smoke else sweeps:
            job = Job(claim, sweep, f"{sweep.preset}_{at}", f"{claim.key}/{sweep.preset}")
            job.skipped = missing(sweep, job.preset, groups)
            extra = ["trainer.progress=false"] + ([f"task.data_dir={e2e_dir}"] if "task=e2e" in sweep.needs and e2e_dir
                                                 else [])
            if job.skipped:
                pass
            elif sweep.tuned:
                job.tune_args = tune_args(job, extra, overrides, smoke)
            else:
                job.runs = plain_runs(job, extra, overrides)
            jobs.append(job)
    return jobs


def command(job: Job) -> str:
    """The one command that makes the same runs (REPORT.md's "Commands"; the data folder left out)."""
    if job.sweep.tuned:
        return "contnet tune " + " ".join(a for a in job.tune_args if not a.startswith("task.data_dir="))
    return f"contnet train -m experiment={job.preset}  # {len(job.runs)} runs"


def describe(job: Job) -> str:
    """'`parc_cpu`: 10 runs, 600 steps of batch 200' / '`tune_…`: tuned, 4 arms (…) × (12 trials + 5 seeds), …'."""
    from contnet.conf import compose
    cfg = compose([f"experiment={job.preset}"])
    tr = cfg.trainer
    length = f"{tr.max_steps} steps" if tr.get("max_steps") else f"{tr.max_epochs} epochs"
    if not job.sweep.tuned:
        return f"`{job.preset}`: {len(job.runs)} run{'s' * (len(job.runs) != 1)}, {length} of batch {tr.batch_size}"
    arms = [a for a, spec in cfg.tune.arms.items() if spec is not None]
    return (f"`{job.preset}`: tuned, {len(arms)} arms ({', '.join(arms)}) × (Optuna trials on val/loss worth "
            f"{cfg.tune.trials} full runs, pruned ones counting the steps they ran, + {len(cfg.tune.seeds)} seeds on "
            f"test), {length} of batch {tr.batch_size}; tuned values and every trial: `{job.dir}/report.md`")


def tuner():
    """The one tuner's main (`contnet tune`)."""
    from contnet.studies.tune import main
    return main


def run_job(job: Job, out: Path, timeout: float | None) -> None:
    """Run what the job still lacks in this process; runs not started by the deadline are left for a rerun."""
    start = time.monotonic()
    deadline = start + timeout if timeout else None

    def do(run, root):
        if deadline is not None and time.monotonic() > deadline:
            job.info["error"] = f"stopped at the {timeout:.0f} s limit (--timeout); a rerun continues"
            return {}
        return runner.run_in_process(run, root)

    try:
        if job.sweep.tuned:
            rc = tuner()([*job.tune_args, "--out", str(out / job.dir)])
            if rc:
                job.info["error"] = f"the tuner exited with code {rc}"
        else:
            runner.execute(job.runs, out, do=do)
    except Exception as e:  # noqa: BLE001 - one claim's failure must not stop the others
        job.info["error"] = f"{e.__class__.__name__}: {e}"
    job.info["seconds"] = round(time.monotonic() - start, 1)
    print(f"[reproduce] {job.dir}: {job.info.get('error', 'ok')} in {job.info['seconds']:.0f} s", flush=True)


def run_dirs(job: Job, out: Path) -> list[Path]:
    """The job's run folders that count: a plain sweep's runs; a tuned sweep's final seeds (not its trials)."""
    if job.sweep.tuned:
        return sorted({p.parent for p in (out / job.dir).glob("final/**/summary.json")})
    return [out / r.dir for r in job.runs]


def first_loss(run_dir: Path) -> float | None:
    """The first logged train/loss (where the run started: "no arm learns" compares the final one with it)."""
    import json
    try:
        with open(run_dir / "metrics.jsonl", encoding="utf-8") as fh:
            return next((r["train/loss"] for r in map(json.loads, fh) if "train/loss" in r), None)
    except (OSError, ValueError):
        return None


def planned_overrides(run_dir: Path) -> list[str]:
    """The overrides the runner made the run with (its study_run.json: a tuned run's values included), less the
    data folder (a machine path)."""
    import json
    try:
        overrides = json.loads((run_dir / runner.PLANNED).read_text())["overrides"]
    except (OSError, ValueError, KeyError):
        return []
    return [o for o in overrides if not o.startswith("task.data_dir=")]


def job_rows(job: Job, out: Path) -> list[dict]:
    """Artifact rows of the job's run folders, with the claim's cell (setting, arm) read from the run's own config."""
    import json

    from omegaconf import OmegaConf
    rows = []
    for d in run_dirs(job, out):
        if not (d / ".hydra" / "config.yaml").is_file():
            continue                              # never started
        setting, arm = job.claim.arm(OmegaConf.to_container(OmegaConf.load(d / ".hydra" / "config.yaml")))
        summary = json.loads((d / "summary.json").read_text()) if (d / "summary.json").is_file() else {}
        rows.append(artifact.run_row(d, out, planned_overrides(d), arm, {
            "claim": job.claim.key, "sweep": job.preset, "setting": setting,
            "params": summary.get("trainable_params"), "first_train_loss": first_loss(d)}))
    return rows


def claim_info(claim: Claim, jobs: list[Job], selected: bool) -> dict:
    """What REPORT.md says of a claim besides its rows: status reasons, budgets, commands, seconds."""
    mine = [j for j in jobs if j.claim.key == claim.key]
    problems = list(dict.fromkeys(j.skipped for j in mine if j.skipped)) + [
        f"{j.preset}: {j.info['error']}" for j in mine if j.info.get("error")]
    return {"selected": selected, "problems": problems, "ran": any(not j.skipped for j in mine),
            "budget": [j.info["budget"] for j in mine if j.info.get("budget")],
            "commands": [command(j) for j in mine if not j.skipped],
            "seconds": round(sum(j.info.get("seconds", 0) for j in mine), 1)}


def partition(keys: list[str], n: int) -> list[list[str]]:
    """The claims of each of N processes: the language-model claim (by far the longest) alone, the others
    round-robin over the remaining processes."""
    lm, rest = [k for k in keys if k == "solo"], [k for k in keys if k != "solo"]
    spread = n - len(lm)
    groups = [lm] * bool(lm) + [rest[i::spread] for i in range(spread)] if spread > 0 else [lm + rest]
    return [g for g in groups if g]


def without(argv: list[str], *options: str) -> list[str]:
    """argv less `options` and their values (`--jobs 2` and `--jobs=2` alike)."""
    out, skip = [], False
    for a in argv:
        if skip or a.split("=", 1)[0] in options:
            skip = not skip and a in options
            continue
        out.append(a)
    return out


def in_children(keys: list[str], n: int, argv: list[str]) -> None:
    """`--jobs N`: the claims split over N `contnet reproduce --run-only` processes (partition).  Processes, not
    threads: each run sets torch's global thread count and signal handlers, and a Python training loop holds the
    GIL, so two runs in one process would take turns."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    rest = without(argv, "--claims", "--jobs")
    procs = [subprocess.Popen([sys.executable, "-m", "contnet.cli.main", "reproduce", "--run-only", "--jobs", "1",
                               "--claims", ",".join(g), *rest], env=env) for g in partition(keys, n)]
    for p in procs:
        p.wait()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="contnet reproduce", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=["cpu", "paper"], default="cpu",
                   help="cpu: the 2-core suite (default); paper: the authors' settings")
    p.add_argument("--claims", default=",".join(c.key for c in CLAIMS),
                   help="comma-separated subset of: " + ", ".join(c.key for c in CLAIMS))
    p.add_argument("--out", default="outputs/reproduce", help="output folder (default outputs/reproduce)")
    p.add_argument("--jobs", type=int, default=None, help="claims run at once, each in its own process, an integer "
                   "≥ 1 (default: 2 at cpu scale, the language-model claim beside the rest; 1 at paper scale)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per sweep, > 0: runs not started by then are "
                   "left for a rerun (default: 1800 on cpu, none on paper)")
    p.add_argument("--e2e-dir", default=None, help="folder with the E2E files (valid.txt, test.txt, ...)")
    p.add_argument("--smoke", action="store_true", help="a few seconds of the first claim only (cpu presets)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--report-only", action="store_true", help="rebuild REPORT.md from --out's runs.jsonl and meta.json")
    p.add_argument("--run-only", action="store_true", help=argparse.SUPPRESS)     # a --jobs child: runs, no report
    p.add_argument("overrides", nargs="*", help="Hydra overrides added to every sweep (e.g. seed=0,1 trainer.max_steps=50)")
    return p


def bad_input(args) -> str | None:
    keys = [k.strip() for k in args.claims.split(",") if k.strip()]
    unknown = [k for k in keys if k not in {c.key for c in CLAIMS}]
    if unknown:
        return f"unknown claim(s) {', '.join(unknown)}; choose from {', '.join(c.key for c in CLAIMS)}"
    if args.jobs is not None and args.jobs < 1:
        return f"--jobs {args.jobs}: must be an integer ≥ 1 (the number of claims run at once)"
    if args.timeout is not None and not args.timeout > 0:
        return f"--timeout {args.timeout:g}: must be a number of seconds > 0 (leave it out for the scale's default)"
    if args.report_only and not (Path(args.out) / artifact.META).is_file():
        return f"--report-only: {Path(args.out) / artifact.META} is missing; run `contnet reproduce` first"
    return None


def run_all(jobs: list[Job], claims: list[Claim], args, argv: list[str], out: Path) -> None:
    n = args.jobs if args.jobs is not None else (2 if args.scale == "cpu" and not args.smoke else 1)
    if n > 1 and len(claims) > 1:
        in_children([c.key for c in claims], n, argv)
        for job in jobs:
            job.info.update(_read_json(out / job.dir / "job.json"))
        return
    timeout = args.timeout or (1800 if args.scale == "cpu" else None)
    for job in sorted(jobs, key=lambda j: j.claim.key != "solo"):
        if not job.skipped:
            run_job(job, out, timeout)
            artifact.atomic_write_json(out / job.dir / "job.json", {k: job.info[k] for k in ("seconds", "error")
                                                                    if k in job.info})


def _read_json(path: Path) -> dict:
    import json
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    bad = bad_input(args)
    if bad:
        print(f"contnet reproduce: error: {bad}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    if args.report_only:
        print(f"[reproduce] wrote {write_report(out)}")
        return 0
    keys = {k.strip() for k in args.claims.split(",")}
    claims = [c for c in CLAIMS if c.key in keys][: 1 if args.smoke else None]
    jobs = plan(claims, args.scale, args.smoke, e2e_data_dir(args.e2e_dir), args.overrides)
    if args.dry_run:
        for j in jobs:
            print(f"# skipped: {j.skipped}\n# " * bool(j.skipped) + command(j))
        return 0
    env, start = artifact.environment(), time.monotonic()
    run_all(jobs, claims, args, argv, out)
    if args.run_only:
        return 0
    added = (claims[0].smoke if args.smoke else []) + list(args.overrides)
    for job in jobs:
        job.info["budget"] = "" if job.skipped else describe(job) + (", then " + " ".join(added) if added else "")
    rows = [row for job in jobs for row in job_rows(job, out)]
    extras = {"seq2d": seq2d_extra()} if any(c.key == "seq2d" for c in claims) else {}
    artifact.write(out, rows, "contnet reproduce " + " ".join(argv), env, time.monotonic() - start,
                        scale="smoke" if args.smoke else args.scale, claims={
                            c.key: {**claim_info(c, jobs, c in claims), "extra": extras.get(c.key, {})}
                            for c in CLAIMS})
    path = write_report(out)
    print(f"[reproduce] wrote {path} ({(time.monotonic() - start) / 60:.1f} min)")
    return 0


def seq2d_extra() -> dict:
    """Claim (c)'s exact check (shared weights, fp64), run here: a failed check is reported, never fatal."""
    from contnet.models.seq2d.equivalence import equivalence_check
    try:
        return {"equivalence": equivalence_check()}
    except Exception as e:  # noqa: BLE001
        return {"equivalence_error": f"{e.__class__.__name__}: {e}"}
