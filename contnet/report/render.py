"""Turn group statistics into a rich table, report.md, report.csv and runs.csv."""

from __future__ import annotations

import contextlib
import io

import csv
import math
import os
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

from contnet.engine.io import atomic_write_bytes
from contnet.engine.progress import substitute_notes
from contnet.report.runs import STATUSES
from contnet.report.stats import GroupStats, Target, final_metrics

DASH = "–"


def fmt_number(x: float) -> str:
    if not isinstance(x, (int, float)) or math.isnan(x):
        return DASH
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"


def fmt_mean_std(stat: tuple[float, float, int] | None) -> str:
    if stat is None or stat[2] == 0:
        return DASH
    mean, std, _ = stat
    return fmt_number(mean) if math.isnan(std) else f"{fmt_number(mean)} ± {fmt_number(std)}"


def fmt_counts(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    rest = ", ".join(f"{counts[s]} {s}" for s in STATUSES[1:] if counts.get(s))
    return f"{counts.get('completed', 0)}/{total} ok" + (f" ({rest})" if rest else "")


def fmt_reached(entry: dict[str, Any]) -> str:
    return f"{entry['reached']}/{entry['runs']}"


def fmt_to_target(entry: dict[str, Any], field: str) -> str:
    return "DNF" if entry["reached"] == 0 else fmt_mean_std(entry[field])


def group_notes(s: GroupStats) -> str:
    """The substitutes any run of the group stands on, e.g. `data: synthetic`."""
    return ", ".join(dict.fromkeys(n for run in s.group.runs for n in substitute_notes(run.summary)))


def run_status(run) -> str:
    notes = substitute_notes(run.summary)
    return run.status + (f" ({', '.join(notes)})" if notes else "")


def table_rows(stats: Sequence[GroupStats], metrics: Sequence[str],
               targets: Sequence[Target]) -> tuple[list[str], list[list[str]]]:
    """Header and rows shared by the terminal table and report.md.

    Best-so-far is shown for the first (primary) metric only, to keep the table
    readable; report.csv has final and best of every metric.
    """
    header = ["group", "runs", "steps", "wall time (s)"]
    for i, key in enumerate(metrics):
        header += [f"final {key}", f"best {key}"] if i == 0 else [f"final {key}"]
    for target in targets:
        header += [f"reached {target}", "steps to target", "time to target (s)"]
    notes = [group_notes(s) for s in stats]
    if any(notes):                        # results on stand-ins (synthetic data, ...) never look like the real thing
        header.append("notes")
    rows = []
    for s, note in zip(stats, notes):
        row = [s.group.label, fmt_counts(s.counts), fmt_mean_std(s.steps), fmt_mean_std(s.wall_time_s)]
        for i, key in enumerate(metrics):
            row.append(fmt_mean_std(s.final.get(key)))
            if i == 0:
                row.append(fmt_mean_std(s.best.get(key)))
        for target in targets:
            entry = s.to_target[target.key]
            row += [fmt_reached(entry), fmt_to_target(entry, "steps"), fmt_to_target(entry, "time_s")]
        if any(notes):
            row.append(note)
        rows.append(row)
    return header, rows


def print_table(stats: Sequence[GroupStats], metrics: Sequence[str], targets: Sequence[Target],
                console: Console | None = None, title: str = "contnet report") -> None:
    header, rows = table_rows(stats, metrics, targets)
    table = Table(title=title, show_lines=False)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < 2 else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    (console or Console()).print(table)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |",
             "|" + "|".join(["---"] + ["---"] + ["---:"] * (len(header) - 2)) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _relative(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:  # another drive on Windows
        return str(path)


@contextlib.contextmanager
def atomic_text(path: Path):
    """A text file written whole or not at all (a report stopped midway leaves the previous one)."""
    buf = io.StringIO(newline="")
    yield buf
    atomic_write_bytes(path, buf.getvalue().encode())


def write_markdown(path: Path, stats: Sequence[GroupStats], metrics: Sequence[str],
                   targets: Sequence[Target], sources: Sequence[Path], plots: Sequence[Path]) -> Path:
    out_dir = path.parent
    header, rows = table_rows(stats, metrics, targets)
    n_runs = sum(len(s.group.runs) for s in stats)
    lines = [
        "# contnet report",
        "",
        f"{n_runs} runs in {len(stats)} groups from: "
        + ", ".join(f"`{_relative(Path(p), out_dir)}`" for p in sources),
        "",
        "Runs are grouped by their composed config minus the seed; cells are mean ± sample std "
        "over the group's completed runs. Time to target is the first logged step (and "
        "`time_s`) at which the metric meets the target, averaged over the runs that reached it; "
        "`reached k/n` counts them among all runs of the group (DNF: none did).",
        "",
    ]
    for target in targets:
        origin = ("given with --target" if target.source == "user" else
                  "default: the worst mean final value among the groups, so every group's "
                  "average run reaches it")
        lines.append(f"- Target: `{target}` ({origin}).")
    if targets:
        lines.append("")
    lines += [markdown_table(header, rows), ""]
    if plots:
        lines += ["## Curves", ""]
        lines += [f"![{p.stem}]({_relative(p, out_dir)})" for p in plots]
        lines.append("")
    lines += ["## Runs", "", "| group | run | seed | status | steps | wall time (s) |",
              "|---|---|---:|---|---:|---:|"]
    for s in stats:
        for run in s.group.runs:
            summary = run.summary or {}
            lines.append("| " + " | ".join(_md_escape(c) for c in [
                s.group.label, _relative(run.path, out_dir), str(run.seed), run_status(run),
                fmt_number(summary.get("steps", math.nan)),
                fmt_number(summary.get("wall_time_s", math.nan))]) + " |")
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path


def _csv_number(x: float) -> str:
    return "" if not isinstance(x, (int, float)) or math.isnan(x) else repr(float(x))


def write_csv(path: Path, stats: Sequence[GroupStats], targets: Sequence[Target]) -> Path:
    """One row per group, every metric; empty cells where a value is undefined."""
    metric_keys = sorted(set().union(*(set(s.final) | set(s.best) for s in stats))) if stats else []
    varying = list(dict.fromkeys(k for s in stats for k, _ in s.group.label_parts))
    header = ["group", *varying, "runs", *STATUSES,
              "steps_mean", "steps_std", "wall_time_s_mean", "wall_time_s_std"]
    for key in metric_keys:
        header += [f"final/{key}/mean", f"final/{key}/std", f"best/{key}/mean", f"best/{key}/std", f"{key}/n"]
    for t in targets:
        header += [f"target/{t.key}", f"target/{t.key}/reached", f"target/{t.key}/steps_mean",
                   f"target/{t.key}/steps_std", f"target/{t.key}/time_s_mean", f"target/{t.key}/time_s_std"]
    with atomic_text(path) as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for s in stats:
            parts = dict(s.group.label_parts)
            row = [s.group.label, *[parts.get(k, "") for k in varying], len(s.group.runs),
                   *[s.counts[st] for st in STATUSES],
                   _csv_number(s.steps[0]), _csv_number(s.steps[1]),
                   _csv_number(s.wall_time_s[0]), _csv_number(s.wall_time_s[1])]
            for key in metric_keys:
                fin = s.final.get(key, (math.nan, math.nan, 0))
                best = s.best.get(key, (math.nan, math.nan, 0))
                row += [_csv_number(fin[0]), _csv_number(fin[1]), _csv_number(best[0]),
                        _csv_number(best[1]), fin[2]]
            for t in targets:
                e = s.to_target[t.key]
                row += [repr(t.value), e["reached"], _csv_number(e["steps"][0]), _csv_number(e["steps"][1]),
                        _csv_number(e["time_s"][0]), _csv_number(e["time_s"][1])]
            writer.writerow(row)
    return path


def write_runs_csv(path: Path, stats: Sequence[GroupStats]) -> Path:
    """One row per run: where it is, its status and final metrics (for ad-hoc analysis)."""
    runs = [(s.group.label, r) for s in stats for r in s.group.runs]
    keys = sorted(set().union(*(final_metrics(r) for _, r in runs))) if runs else []
    with atomic_text(path) as fh:
        writer = csv.writer(fh)
        writer.writerow(["group", "path", "seed", "status", "steps", "wall_time_s",
                         *[f"final/{k}" for k in keys], "notes"])
        for label, run in runs:
            summary = run.summary or {}
            final = final_metrics(run)
            writer.writerow([label, str(run.path), run.seed, run.status, summary.get("steps", ""),
                             summary.get("wall_time_s", ""), *[_csv_number(final.get(k, math.nan)) for k in keys],
                             "; ".join(substitute_notes(run.summary))])
    return path
