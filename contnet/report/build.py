"""`make_report`: run directories in, table + report.md + CSVs + PNGs out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from rich.console import Console

from contnet.report import render
from contnet.report.grouping import DEFAULT_IGNORED_KEYS, Group, group_runs
from contnet.report.runs import Run, load_runs
from contnet.report.stats import (GroupStats, Target, default_target, final_metrics, group_stats,
                                  pick_primary_metric)


class NoRunsError(ValueError):
    """No run directory under the given paths."""


class MetricNotLoggedError(ValueError):
    """A metric or target key that no run logged (the table would say DNF everywhere)."""


def check_logged(runs: Sequence[Run], metrics: Sequence[str], targets: Sequence[Target]) -> None:
    """Every asked-for metric and target key was logged by at least one run, else MetricNotLoggedError."""
    logged: set[str] = set()
    for run in runs:
        logged.update(run.metric_keys(), final_metrics(run))
    for flag, key in [*(("--metric", m) for m in metrics), *(("--target", t.key) for t in targets)]:
        if key not in logged:
            shown = sorted(k for k in logged if "/" in k or k == "lambda")
            raise MetricNotLoggedError(f"{flag} {key}: no run logged it; the runs logged: "
                                       f"{', '.join(shown) or 'nothing yet'} (choose one of those)")


@dataclass
class Report:
    runs: list[Run]
    groups: list[Group]
    stats: list[GroupStats]
    metrics: list[str]  # metrics shown in the table
    targets: list[Target]
    out_dir: Path
    files: list[Path] = field(default_factory=list)


def _console() -> Console:
    # Piped output (CI logs, files) has no width; rich would fold cells at 80 columns.
    console = Console()
    return console if console.is_terminal else Console(width=200)


def display_metrics(runs: Sequence[Run], requested: Sequence[str]) -> list[str]:
    """`--metric` keys, else the primary metric plus the other val/test finals (≤ 3 in all)."""
    if requested:
        return list(dict.fromkeys(requested))
    primary = pick_primary_metric(runs)
    if primary is None:
        return []
    keys: set[str] = set()
    for run in runs:
        keys.update(final_metrics(run))
    split_rank = {"val": 0, "test": 1}
    others = sorted((k for k in keys if k != primary and k.split("/", 1)[0] in split_rank),
                    key=lambda k: (split_rank[k.split("/", 1)[0]], k))
    return [primary, *others][:3]


def run_curves(paths: Sequence[Path]) -> list[Path]:
    """curves.png in each run directory named itself (`contnet report <run dir>`): a run leaves it to the report
    (trainer.plot=auto) so that `contnet train` does not pay for matplotlib.  A sweep's jobs are drawn together by
    write_plots instead.  A plot that fails is one warning; the report goes on."""
    import logging

    from contnet.engine.plots import plot_curves
    out = []
    for path in paths:
        if not (path / "metrics.jsonl").is_file():
            continue
        try:
            plot_curves(path / "metrics.jsonl", path / "curves.png")
        except Exception as e:  # noqa: BLE001 - a figure never fails the report
            logging.getLogger("contnet").warning("%s: curves.png not written (%s: %s)", path, type(e).__name__, e)
        if (path / "curves.png").is_file():
            out.append(path / "curves.png")
    return out


def make_report(paths: Sequence[Path | str], out_dir: Path | str | None = None,
                targets: Sequence[Target] = (), metrics: Sequence[str] = (),
                ignore: Sequence[str] = (), plots: bool = True,
                console: Console | None = None, quiet: bool = False, require_logged: bool = True) -> Report:
    """Aggregate every run under `paths`; write the report files into `out_dir`.

    `targets` empty: one default target on the first displayed metric (see
    stats.default_target). Raises NoRunsError when nothing is found, and (with `require_logged`)
    MetricNotLoggedError, before writing anything, for a `metrics` or `targets` key that no run logged.
    """
    paths = [Path(p) for p in paths]
    runs = load_runs(paths)
    if not runs:
        raise NoRunsError("no run directories (with .hydra/config.yaml or summary.json) under "
                          + ", ".join(str(p) for p in paths))
    if require_logged:
        check_logged(runs, metrics, targets)
    out = Path(out_dir) if out_dir is not None else paths[0]
    out.mkdir(parents=True, exist_ok=True)

    groups = group_runs(runs, (*DEFAULT_IGNORED_KEYS, *ignore))
    shown = display_metrics(runs, metrics)
    chosen = list(targets)
    if not chosen and shown:
        target = default_target(groups, shown[0])
        chosen = [target] if target is not None else []
    stats = [group_stats(g, chosen) for g in groups]

    report = Report(runs=runs, groups=groups, stats=stats, metrics=shown, targets=chosen, out_dir=out)
    figures: list[Path] = []
    curves: list[Path] = []
    if plots:
        from contnet.report.plots import write_plots  # matplotlib only when plotting

        figures = write_plots(groups, out, extra_keys=shown)
        curves = run_curves(paths)
    report.files = [
        render.write_markdown(out / "report.md", stats, shown, chosen, paths, figures),
        render.write_csv(out / "report.csv", stats, chosen),
        render.write_runs_csv(out / "runs.csv", stats),
        *figures, *curves,
    ]
    if not quiet:
        console = console or _console()
        render.print_table(stats, shown, chosen, console=console,
                           title=f"contnet report: {len(runs)} runs, {len(groups)} groups")
        for target in chosen:
            origin = "" if target.source == "user" else " (default: worst group mean of final values)"
            console.print(f"target {target}{origin}")
        for s in stats:                   # on one line each, so a folded table cell cannot hide them
            notes = render.group_notes(s)
            if notes:
                console.print(f"note: {s.group.label} ran on stand-ins: {notes}", markup=False)
        console.print(f"wrote {out / 'report.md'}, report.csv, runs.csv and {len(figures)} plots"
                      + "".join(f"; {c}" for c in curves))
    return report
