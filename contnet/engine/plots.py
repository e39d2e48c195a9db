"""curves.png of a run: losses (and accuracy) against steps, λ on a second axis when present.

Drawn with matplotlib's object API on the Agg canvas, without pyplot: no global figure state and no backend
switch in the process that trains; fixed margins instead of tight_layout, which would render the text once
more to measure it."""
from __future__ import annotations

import json
from pathlib import Path


def read_series(metrics_path: Path) -> dict[str, tuple[list, list]]:
    """Every numeric key of metrics.jsonl but step, time_s and lr, as (steps, values)."""
    series: dict[str, tuple[list, list]] = {}
    for line in Path(metrics_path).read_text().splitlines():
        rec = json.loads(line)
        for k, v in rec.items():
            if k not in ("step", "time_s", "lr") and isinstance(v, (int, float)):
                xs, ys = series.setdefault(k, ([], []))
                xs.append(rec["step"])
                ys.append(v)
    return series


def plot_curves(metrics_path: Path, out: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = read_series(metrics_path)
    if not series:
        return
    acc_keys = [k for k in series if not k.endswith("loss") and k != "lambda"]
    fig = Figure(figsize=(11 if acc_keys else 6, 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if acc_keys else 1, squeeze=False)
    ax = axes[0][0]
    for k in sorted(series):
        if k.endswith("loss"):
            ax.plot(*series[k], label=k, lw=1 if k == "train/loss" else 2, alpha=0.6 if k == "train/loss" else 1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    if "lambda" in series:
        ax2 = ax.twinx()
        ax2.plot(*series["lambda"], color="k", ls="--", label="λ")
        ax2.set_ylabel("λ")
        ax2.set_ylim(-0.02, 1.05)
        ax2.legend(loc="center right")
    ax.legend(loc="upper right")
    if acc_keys:
        for k in sorted(acc_keys):
            axes[0][1].plot(*series[k], label=k)
        axes[0][1].set_xlabel("step")
        axes[0][1].legend()
    width = 11 if acc_keys else 6                  # inches: margins as fractions that fit the axis labels
    fig.subplots_adjust(left=0.95 / width, right=1 - (0.6 if "lambda" in series else 0.2) / width, bottom=0.13,
                        top=0.96, wspace=0.2)
    fig.savefig(out, dpi=100)
