"""REPORT.md for `contnet reproduce`, rendered from the study's raw results alone (runs.jsonl + meta.json in the same
folder, contnet.studies.artifact): per claim, our numbers (mean ± std over seeds) beside the published ones, the run
counts, and the verdict sentence of contnet.studies.claims.  Cells and tables are formatted by
contnet.report.render, as in `contnet report`; `contnet reproduce --report-only` rewrites it from the artifact."""
from __future__ import annotations

from pathlib import Path

from contnet.report.render import DASH, fmt_mean_std, markdown_table
from contnet.report.stats import mean_std
from contnet.studies import artifact
from contnet.studies.claims import CLAIMS, Cells, Claim


def build_cells(rows: list[dict]) -> Cells:
    """setting -> arm -> the completed runs' final metrics (lists over seeds), counts and trainable parameters."""
    cells: Cells = {}
    for row in rows:
        cell = cells.setdefault(row["setting"], {}).setdefault(
            row["arm"], {"values": {}, "first": [], "runs": 0, "completed": 0, "params": None})
        cell["runs"] += 1
        if row["status"] != "completed":
            continue
        cell["completed"] += 1
        cell["params"] = row.get("params") if row.get("params") is not None else cell["params"]
        if row.get("first_train_loss") is not None:
            cell["first"].append(row["first_train_loss"])
        for key, value in row["final"].items():
            cell["values"].setdefault(key, []).append(value)
    return cells


def judge(claim: Claim, rows: list[dict], info: dict) -> dict:
    """The claim's status, counts, seeds and verdict."""
    mine = [r for r in rows if r.get("claim") == claim.key]
    done = sum(r["status"] == "completed" for r in mine)
    result = {"cells": build_cells(mine), "completed": done, "total": len(mine), "held": "not tested", "sentence": "",
              "seeds": sorted({r["seed"] for r in mine if r.get("seed") is not None})}
    problems = list(info.get("problems", []))
    if not info.get("selected", True):
        return {**result, "status": "not run: not selected (--claims)"}
    if not mine:
        reasons = problems or ["no run folder found"]
        return {**result, "status": ("failed: " if info.get("ran") else "not run: ") + "; ".join(reasons)}
    if done < len(mine):
        problems.insert(0, f"{done} of {len(mine)} runs completed")
    result["status"] = "ran" if not problems else "partial: " + "; ".join(problems)
    extra = info.get("extra", {})
    try:
        result["held"], result["sentence"] = claim.verdict(result["cells"], extra)
    except Exception as e:  # noqa: BLE001 - the report must still be written
        result["sentence"] = f"verdict failed: {e.__class__.__name__}: {e}"
    if extra.get("equivalence_error"):
        result["sentence"] += f" (exact check failed: {extra['equivalence_error']})"
    return result


def claim_table(claim: Claim, cells: Cells) -> str:
    rows = []
    for setting, arms in cells.items():
        for arm, cell in arms.items():
            rows.append([setting, arm, f"{cell['completed']}/{cell['runs']}", *[
                (f"{cell['params']:,}" if cell["params"] is not None else DASH) if key == "params"
                else fmt_mean_std(mean_std(cell["values"].get(key, []))) for key in claim.metrics]])
    return markdown_table(["setting", "arm", "runs ok", *claim.metrics], rows)


def header(meta: dict) -> list[str]:
    wall = "not measured" if meta.get("wall_s") is None else f"{meta['wall_s'] / 60:.1f} min ({meta['wall_s']:.0f} s)"
    load = f"load average {meta.get('load_start')} at the start, {meta.get('load_end')} at the end"
    lines = [f"# Paper claims: reproduction report (scale {meta.get('scale')})", "",
             f"Written {meta.get('date')} by `{meta.get('command')}` at git {str(meta.get('git_sha'))[:7]} on "
             f"{meta.get('cpus')} CPU cores ({meta.get('device')}, torch {meta.get('torch')}; {load}). "
             f"Total wall time: **{wall}**. Raw results: `runs.jsonl` and `meta.json` beside this file.", "",
             "Numbers are mean ± sample std over seeds of each run's final metrics (completed runs only). A "
             "difference is called a win only by Welch's t-test over the seeds (two-sided, 5% level); a setting "
             "where every arm stays at chance accuracy, or no arm's training loss falls, is *not informative* and "
             "counts neither for nor against a claim. Published numbers exist only for Solo Connection / LoRA "
             "(E2E) and for the Sequential2D reference notebook.", ""]
    if meta.get("scale") == "cpu":
        lines += ["The cpu scale is sized for a shared 2-core machine (the **Budget** line of each claim). Claims "
                  "(a) on autoencoders, (b) and (d) are tuned comparisons (docs/tuning.md): every arm gets its own "
                  "values, chosen by Optuna trials on validation loss, then fresh seeds on test. Small budgets favour "
                  "whatever converges fastest; read the verdicts as statements about these budgets.", ""]
    return lines


def claim_section(claim: Claim, r: dict, info: dict) -> list[str]:
    lines = [f"## {claim.title}", "", f"**Claim.** {claim.source}", "",
             f"**Status.** {r['status']}" + (f" ({info['seconds']:.0f} s)" if info.get("seconds") else ""), ""]
    if info.get("budget"):
        lines += ["**Budget.** " + "; ".join(info["budget"]) + ".", ""]
    if r["cells"]:
        lines += ["**Ours.**", "", claim_table(claim, r["cells"]), ""]
    eq = info.get("extra", {}).get("equivalence")
    if eq:
        lines += [f"Exact equivalence check (fp64, {eq['samples']} validation digits, shared weights): max |difference| "
                  f"over outputs, gradients and weights after one Adam step = {eq['max_abs_diff']:.2e}; parameters "
                  f"{eq['params_mlp']:,} (nn.Sequential) vs {eq['params_seq2d']:,} (Sequential2D).", ""]
    lines += ["**Published.** " + claim.published, "", f"**Verdict: {r['held']}.** {r['sentence'] or DASH}", ""]
    if info.get("commands"):
        lines += ["Commands:", "", "```", *info["commands"], "```", ""]
    return lines


def write_report(out: Path) -> Path:
    """REPORT.md from out/runs.jsonl and out/meta.json."""
    meta, rows = artifact.read_meta(out), artifact.read_rows(out)
    infos = meta.get("claims", {})
    results = {c.key: judge(c, rows, infos.get(c.key, {"selected": False})) for c in CLAIMS}
    summary = [[c.title, r["status"], f"{r['completed']}/{r['total']}", str(len(r["seeds"])) if r["seeds"] else DASH,
                r["held"], r["sentence"] or DASH] for c, r in zip(CLAIMS, results.values())]
    lines = header(meta) + ["## Summary", "", markdown_table(
        ["claim", "status", "runs ok", "seeds", "verdict", "what the numbers say"], summary), ""]
    for c in CLAIMS:
        lines += claim_section(c, results[c.key], infos.get(c.key, {}))
    path = Path(out) / "REPORT.md"
    artifact.atomic_write_bytes(path, "\n".join(lines).encode())
    return path
