"""curves.png of a run: losses (and accuracy) against steps, λ on a second axis when present."""
from __future__ import annotations

import json
from pathlib import Path


def plot_curves(metrics_path: Path, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, tuple[list, list]] = {}
    for line in Path(metrics_path).read_text().splitlines():
        rec = json.loads(line)
        for k, v in rec.items():
            if k not in ("step", "time_s", "lr") and isinstance(v, (int, float)):
                xs, ys = series.setdefault(k, ([], []))
                xs.append(rec["step"])
                ys.append(v)
    if not series:
        return
    acc_keys = [k for k in series if not k.endswith("loss") and k != "lambda"]
    fig, axes = plt.subplots(1, 2 if acc_keys else 1, figsize=(11 if acc_keys else 6, 4), squeeze=False)
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
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
