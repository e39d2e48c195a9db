"""REPORT.md for `contnet reproduce`: per claim, our numbers (mean ± std over seeds) beside the published ones,
the run counts, and the verdict sentence computed by contnet.reproduce.claims.  Cells and tables are formatted
by contnet.report.render, as in `contnet report`."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from contnet.report.render import DASH, fmt_mean_std, markdown_table
from contnet.report.render import _relative as relative_path
from contnet.report.runs import load_runs
from contnet.report.stats import mean_std
from contnet.reproduce.claims import Cells, Claim


@dataclass
class ClaimResult:
    claim: Claim
    status: str                           # "ran", "partial: ...", "failed: ...", "not run: ..."
    cells: Cells = field(default_factory=dict)
    completed: int = 0
    total: int = 0
    seeds: list = field(default_factory=list)
    held: str = "not tested"
    sentence: str = ""
    report_md: Path | None = None
    commands: list[str] = field(default_factory=list)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    budget: list[str] = field(default_factory=list)


def build_cells(claim: Claim, runs) -> tuple[Cells, int, int, list]:
    """Group runs into setting -> arm cells; mean ± std of the final metrics over completed runs."""
    raw: dict[str, dict[str, dict[str, Any]]] = {}
    seeds = set()
    for run in runs:
        summary = run.summary or {}
        setting, arm = claim.arm(run.config, summary)
        cell = raw.setdefault(setting, {}).setdefault(arm, {"values": {}, "runs": 0, "completed": 0, "params": None})
        cell["runs"] += 1
        if run.seed is not None:
            seeds.add(run.seed)
        if run.status != "completed":
            continue
        cell["completed"] += 1
        cell["params"] = summary.get("trainable_params", cell["params"])
        for key, value in (summary.get("final") or {}).items():
            cell["values"].setdefault(key, []).append(value)
    cells: Cells = {}
    completed = total = 0
    for setting, arms in raw.items():
        for arm, cell in arms.items():
            metrics = {k: mean_std(v) for k, v in cell["values"].items()}
            cells.setdefault(setting, {})[arm] = {"metrics": metrics, "runs": cell["runs"],
                                                  "completed": cell["completed"], "params": cell["params"]}
            completed += cell["completed"]
            total += cell["runs"]
    return cells, completed, total, sorted(seeds, key=str)


def analyse(claim: Claim, sweep_runs: Sequence, out: Path, extra: dict, selected: bool = True,
            scale: str = "cpu") -> ClaimResult:
    result = ClaimResult(claim, status="", extra=extra)
    result.commands = [" ".join(r.command[2:]).replace("contnet.cli.main", "contnet", 1) for r in sweep_runs]
    result.seconds = sum(r.seconds for r in sweep_runs)
    result.budget = [r.extra["budget"] for r in sweep_runs if r.extra.get("budget")]
    if not selected:
        result.status = "not run: not selected (--claims)"
        return result
    skipped = list(dict.fromkeys(r.skipped for r in sweep_runs if r.skipped))   # one reason once
    errors = [f"{r.sweep.preset}: {r.error}" for r in sweep_runs if r.error]
    dirs = [r.sweep_dir / "final" if r.sweep.tuned else r.sweep_dir     # tuned: the final seeds, not the trials
            for r in sweep_runs if not r.skipped and r.sweep_dir.exists()]
    dirs = [d for d in dirs if d.exists()]
    runs = load_runs(dirs) if dirs else []
    if not runs:
        reasons = skipped + errors or ["no run folder found"]
        result.status = ("not run: " if skipped and not errors else "failed: ") + "; ".join(reasons)
        return result
    result.cells, result.completed, result.total, result.seeds = build_cells(claim, runs)
    problems = skipped + errors
    if result.completed < result.total:
        problems.insert(0, f"{result.completed} of {result.total} runs completed")
    result.status = "ran" if not problems else "partial: " + "; ".join(problems)
    try:
        result.held, result.sentence = claim.verdict(result.cells, extra)
    except Exception as e:  # noqa: BLE001 - the report must still be written
        result.held, result.sentence = "not tested", f"verdict failed: {e.__class__.__name__}: {e}"
    if extra.get("equivalence_error"):
        result.sentence += f" (exact check failed: {extra['equivalence_error']})"
    try:
        from contnet.report import make_report
        report = make_report(dirs, out_dir=out / claim.key / "report", quiet=True)
        result.report_md = report.out_dir / "report.md"
    except Exception as e:  # noqa: BLE001
        result.status += f" (contnet report failed: {e.__class__.__name__}: {e})"
    return result


# ------------------------------------------------------------------------------------ rendering

def claim_table(result: ClaimResult) -> str:
    metrics = result.claim.metrics
    rows = []
    for setting, arms in result.cells.items():
        for arm, cell in arms.items():
            row = [setting, arm, f"{cell['completed']}/{cell['runs']}"]
            for key in metrics:
                if key == "params":
                    row.append(f"{cell['params']:,}" if cell["params"] is not None else DASH)
                else:
                    row.append(fmt_mean_std(cell["metrics"].get(key)))
            rows.append(row)
    return markdown_table(["setting", "arm", "runs ok", *metrics], rows)


def _git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[2], timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def write_report(results: Sequence[ClaimResult], out: Path, scale: str, wall_s: float | None,
                 argv: Sequence[str]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    wall = "not measured" if wall_s is None else f"{wall_s / 60:.1f} min ({wall_s:.0f} s)"
    if wall_s is not None and "--report-only" in argv:
        wall += ", measured by the run that produced these folders (timing.json)"
    lines = [f"# Paper claims: reproduction report (scale {scale})", "",
             f"Written {now} by `{' '.join(argv)}` at git {_git_sha()} on {os.cpu_count()} CPU cores "
             f"({platform.machine()}, Python {platform.python_version()}). Total wall time: **{wall}**.", "",
             "Numbers are mean ± sample std over seeds of each run's final metrics (completed runs only). "
             "Published numbers exist only for Solo Connection / LoRA (E2E) and for the Sequential2D "
             "reference notebook; the continuation papers' tables are not available (see each claim).", ""]
    if scale == "cpu":
        lines += ["The cpu scale has a budget of 45 minutes on 2 cores: short runs (the **Budget** line of each "
                  "claim), 5 seeds for the statistical claims, one seed and a few dozen steps for the language-model "
                  "claim. Claims (a) on autoencoders and (b) are tuned comparisons (docs/tuning.md): every optimizer "
                  "gets its own lr (and Δλ or arclength bounds), chosen by 12 Optuna trials on validation loss, then "
                  "5 fresh seeds on test; the tuned values are in each sweep's report.md. Small budgets favour whatever "
                  "converges fastest; read the verdicts as statements about these budgets, not about the papers' "
                  "settings.", ""]
    lines += ["## Summary", ""]
    rows = []
    for r in results:
        seeds = f"{len(r.seeds)}" + ("" if r.claim.statistical else " (not statistical)") if r.seeds else DASH
        rows.append([r.claim.title, r.status, f"{r.completed}/{r.total}", seeds, r.held,
                     r.sentence or DASH])
    lines += [markdown_table(["claim", "status", "runs ok", "seeds", "verdict", "what the numbers say"], rows), ""]
    for r in results:
        lines += [f"## {r.claim.title}", "", f"**Claim.** {r.claim.source}", "",
                  f"**Status.** {r.status}" + (f" ({r.seconds:.0f} s)" if r.seconds else ""), ""]
        if r.budget:
            lines += ["**Budget.** " + "; ".join(r.budget) + ".", ""]
        if r.cells:
            lines += ["**Ours.**", "", claim_table(r), ""]
        eq = r.extra.get("equivalence")
        if eq:
            lines += [f"Exact equivalence check (fp64, {eq['samples']} validation digits, shared weights): "
                      f"max |difference| over outputs, gradients and weights after one Adam step = "
                      f"{eq['max_abs_diff']:.2e}; parameters {eq['params_mlp']:,} (nn.Sequential) vs "
                      f"{eq['params_seq2d']:,} (Sequential2D).", ""]
        lines += ["**Published.** " + r.claim.published, "", f"**Verdict: {r.held}.** {r.sentence or DASH}", ""]
        if r.report_md is not None:
            lines += [f"Full report (all metrics, time to target, curves): `{relative_path(r.report_md, out)}`.", ""]
        if r.commands:
            lines += ["Commands:", "", "```", *r.commands, "```", ""]
    path = out / "REPORT.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    tmp.replace(path)
    return path
