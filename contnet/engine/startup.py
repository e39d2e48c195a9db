"""A process's start-up: the garbage collector's pace while a command imports torch, its dynamo, Hydra and the rest.

CPython runs a full collection whenever the objects that survived younger ones have grown by about a quarter; while
a process imports torch (~0.5 M objects) that is a pass over everything imported so far, again and again: about
0.8 s of the ~3 s that `import torch, torch._dynamo, contnet.conf` takes here (bench/bench_startup.py).  A command
(cli/main.py:run_command) calls `starting()` first: young objects are still collected, full passes wait; the work
calls `started()` as it begins (fit(), before the first step; run_command again at its end), which puts the
previous thresholds back.  Nothing else changes: a library caller of fit() that never called `starting()` keeps
its own thresholds."""
from __future__ import annotations

import gc

STARTUP_THRESHOLDS = (20_000, 50, 1_000)     # gen0 every 20 000 allocations; a full pass after 50 000 of those
_saved: tuple[int, int, int] | None = None


def starting() -> None:
    global _saved
    if _saved is None:
        _saved = gc.get_threshold()
        gc.set_threshold(*STARTUP_THRESHOLDS)


def started() -> None:
    global _saved
    if _saved is not None:
        gc.set_threshold(*_saved)
        _saved = None
