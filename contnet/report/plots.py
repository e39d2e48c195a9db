"""PNG curves with a mean ± std band per group (DeepOBS style), matplotlib Agg only.

Runs of a group rarely log at exactly the same x (wall time never matches), so
each run is linearly interpolated onto a shared grid inside its own x range and
the band is taken over the runs present at each grid point.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: clusters, CI, Hydra callbacks
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from contnet.report.grouping import Group  # noqa: E402
from contnet.report.runs import Run  # noqa: E402
from contnet.report.stats import completed_runs  # noqa: E402

_MAX_GRID = 400
X_LABELS = {"step": "step", "time_s": "wall time (s)"}


def plotted_runs(group: Group) -> tuple[list[Run], bool]:
    """Completed runs, or every run with metrics when none completed (flag True)."""
    done = [r for r in completed_runs(group) if r.metrics]
    if done:
        return done, False
    return [r for r in group.runs if r.metrics], True


def band(runs: Sequence[Run], key: str, x: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(grid, mean, std) of `key` against `x` over runs; std is 0 where one run covers x."""
    curves = [run.curve(key, x) for run in runs]
    curves = [(np.asarray(xs), np.asarray(ys)) for xs, ys in curves if len(xs) > 0]
    if not curves:
        return None
    all_x = np.unique(np.concatenate([xs for xs, _ in curves]))
    grid = all_x if all_x.size <= _MAX_GRID else np.linspace(all_x[0], all_x[-1], _MAX_GRID)
    stack = np.full((len(curves), grid.size), np.nan)
    for i, (xs, ys) in enumerate(curves):
        order = np.argsort(xs, kind="stable")
        xs, ys = xs[order], ys[order]
        inside = (grid >= xs[0]) & (grid <= xs[-1])
        stack[i, inside] = np.interp(grid[inside], xs, ys)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN columns
        mean = np.nanmean(stack, axis=0)
        count = np.sum(~np.isnan(stack), axis=0)
        spread = np.nanstd(stack, axis=0, ddof=1) if len(curves) > 1 else np.zeros(grid.size)
        std = np.where(count > 1, spread, 0.0)  # one run at x: no band
    keep = ~np.isnan(mean)
    if not keep.any():
        return None
    return grid[keep], mean[keep], np.nan_to_num(std[keep])


def plot_metric_panels(groups: Sequence[Group], keys: Sequence[str], x: str, path: Path,
                       title: str) -> Path | None:
    """One panel per metric key, one coloured line + band per group; None if empty."""
    panels = []
    for key in keys:
        lines = []
        for group in groups:
            runs, partial = plotted_runs(group)
            result = band(runs, key, x)
            if result is not None and result[0].size > 1:  # one point (end-only metric): no curve
                label = group.label + (" (not completed)" if partial else "")
                lines.append((label, partial, len(runs), result))
        if lines:
            panels.append((key, lines))
    if not panels:
        return None
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels_to_colors: dict[str, str] = {}
    for ax, (key, lines) in zip(axes.flat, panels):
        ymins = []
        for label, partial, n, (gx, mean, std) in lines:
            color = labels_to_colors.setdefault(label, colors[len(labels_to_colors) % len(colors)])
            ax.plot(gx, mean, color=color, linestyle="--" if partial else "-", linewidth=1.5,
                    label=f"{label} (n={n})")
            ax.fill_between(gx, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
            finite = mean[np.isfinite(mean)]
            if finite.size:
                ymins.append((finite.min(), finite.max()))
        if "loss" in key and ymins:
            lo, hi = min(m for m, _ in ymins), max(m for _, m in ymins)
            if lo > 0 and hi / lo > 20:
                ax.set_yscale("log")
        ax.set_xlabel(X_LABELS.get(x, x))
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in list(axes.flat)[1:len(panels)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8,
               frameon=False)
    fig.suptitle(title)
    legend_rows = math.ceil(len(labels) / 3)
    fig.tight_layout(rect=(0, min(0.06 * legend_rows / rows, 0.4), 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    tmp.replace(path)                    # whole or not at all
    return path


def metric_keys_present(groups: Sequence[Group]) -> set[str]:
    keys: set[str] = set()
    for group in groups:
        for run in group.runs:
            keys.update(run.metric_keys())
    return keys


def _split_order(key: str) -> tuple[int, bool, str]:
    split, _, metric = key.partition("/")
    # train, val, test; the plain `loss`/`acc` before variants such as `full_loss`
    return ({"train": 0, "val": 1, "test": 2}.get(split, 3), metric not in ("loss", "acc"), key)


def write_plots(groups: Sequence[Group], out_dir: Path, extra_keys: Sequence[str] = ()) -> list[Path]:
    """All standard figures that have data; returns the files written."""
    keys = metric_keys_present(groups)
    losses = sorted((k for k in keys if "/" in k and k.rsplit("/", 1)[1].endswith("loss")),
                    key=_split_order)
    accs = sorted((k for k in keys if "/" in k and "acc" in k.rsplit("/", 1)[1]), key=_split_order)
    extra = [k for k in extra_keys if k in keys and k not in losses and k not in accs]
    written = []
    jobs = [
        ("loss_vs_step.png", losses, "step", "loss vs steps (mean ± std over seeds)"),
        ("loss_vs_time.png", losses, "time_s", "loss vs wall time (mean ± std over seeds)"),
        ("acc_vs_step.png", accs, "step", "accuracy vs steps (mean ± std over seeds)"),
        ("lambda_vs_step.png", ["lambda"] if "lambda" in keys else [], "step",
         "homotopy λ vs steps (mean ± std over seeds)"),
        ("metrics_vs_step.png", extra, "step", "selected metrics vs steps"),
    ]
    for name, panel_keys, x, title in jobs:
        if panel_keys:
            path = plot_metric_panels(groups, panel_keys, x, out_dir / name, title)
            if path is not None:
                written.append(path)
    return written
