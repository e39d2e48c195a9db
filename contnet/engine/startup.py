"""A process's start-up: the garbage collector's pace while a command imports torch, its dynamo, Hydra and the rest.

CPython (3.11) makes a full collection after every ten collections of the middle generation once the objects that
survived them have grown by a quarter; while a process imports torch (hundreds of thousands of objects) that is a
pass over everything imported so far, again and again. A command (cli/main.py:run_command) calls `starting()` first:
young objects are still collected, full passes wait; the work calls `started()` as it begins (fit(), before the
first step; `contnet eval`, before decoding; run_command again at its end), which puts the previous thresholds back.
A library caller of fit() that never called `starting()` keeps its own thresholds. The default `contnet train`
before and after (bench/bench_startup.py): docs/results/startup/."""
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
