"""Console feedback: a rich progress bar on a terminal, plain periodic lines otherwise, a final table.

rich is imported lazily: without it (a bare CUDA box) the bar and the table become plain log lines.
"""
from __future__ import annotations

import logging
import sys

log = logging.getLogger("contnet")


def _console(**kw):
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(**kw)


class ProgressReporter:
    def __init__(self, total: int, enabled: bool, print_every: int, start: int = 0):
        self.total, self.print_every = total, max(1, print_every)
        self.bar = None
        console = _console(stderr=True) if enabled and sys.stderr.isatty() else None
        if console is not None and console.is_terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                console=console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("train", total=total, completed=start, info="")

    def update(self, step: int, record: dict) -> None:
        if self.bar is not None:
            if step % 10 == 0 or step == self.total:
                info = " ".join(f"{k}={v:.4g}" for k, v in record.items()
                                if k in ("train/loss", "val/loss", "val/acc", "lambda"))
                self.bar.update(self.task, completed=step, info=info)
        elif step % self.print_every == 0 or step == self.total:
            parts = [f"{k}={v:.4g}" for k, v in record.items() if k not in ("step", "time_s") and isinstance(v, float)]
            log.info("step %d/%d %s", step, self.total, " ".join(parts))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# summary.json keys (Task.provenance) and the values that mark a result computed on a stand-in
SUBSTITUTES = {"data": "synthetic", "train_split": "valid", "scores": "approximate"}


def substitute_notes(summary: dict | None) -> list[str]:
    """What a result stands on that is not the real thing, read from summary.json: `data: synthetic`,
    `train_split: valid`, `scores: approximate` (empty for a normal run; `contnet report` shows them too)."""
    return [f"{k}: {v}" for k, v in SUBSTITUTES.items() if (summary or {}).get(k) == v]


def final_table(summary: dict) -> None:
    notes = "".join(f" ({n})" for n in substitute_notes(summary))          # e.g. (data: synthetic)
    console = _console()
    if console is None:
        print(f"{summary['status']}{notes}: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(summary["final"].items())
                                                   if isinstance(v, float)), flush=True)
        return
    from rich.table import Table
    table = Table(title=f"{summary['task']} · {summary['model']} · {summary['optimizer']} · seed {summary['seed']}"
                        f" — {summary['status']}{notes}")
    table.add_column("metric")
    table.add_column("final", justify="right")
    table.add_column("best", justify="right")
    for k in sorted(summary["final"]):
        if k in ("time_s", "lr"):
            continue
        best = summary["best"].get(k)
        table.add_row(k, f"{summary['final'][k]:.4g}", "" if best is None else f"{best:.4g}")
    table.caption = (f"{summary['steps']} steps in {summary['wall_time_s']:.1f} s · "
                     f"{summary['trainable_params']:,} trainable / {summary['total_params']:,} params · "
                     f"{summary['run_dir']}")
    console.print(table)
