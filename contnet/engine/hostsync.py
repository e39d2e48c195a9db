"""Count device→host conversions made by contnet code (the CPU stand-in for CUDA's sync debug mode).

On CUDA every `Tensor.item()`, `float(t)`, `int(t)`, `bool(t)`, `t.tolist()`, `t.cpu()` or `t.numpy()` of a
device tensor blocks the host until the GPU has caught up.  On a CPU-only machine nothing blocks, but
the same calls can be counted: `count_host_syncs()` patches those methods on `torch.Tensor` for the
duration of a `with` block and counts the calls whose immediate caller is a file under `roots`
(default: the contnet package), so torch's own CPU-side bookkeeping (e.g. the optimizers' CPU step
counters) is not counted.  `mark()` splits the count into segments (e.g. per training step).
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

CONVERSIONS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")
_ROOT = str(Path(__file__).resolve().parents[1])           # .../contnet


@dataclass
class SyncCounter:
    total: int = 0
    by_site: dict = field(default_factory=dict)              # "file:line method" -> count
    segments: list = field(default_factory=list)             # counts between successive mark() calls
    events: list = field(default_factory=list)               # the site of every counted call, in order
    _since_mark: int = 0

    def mark(self) -> int:
        """Close the current segment; returns its count."""
        n, self._since_mark = self._since_mark, 0
        self.segments.append(n)
        return n


@contextlib.contextmanager
def count_host_syncs(roots: tuple[str, ...] | None = None):
    roots = tuple(str(Path(r).resolve()) for r in roots) if roots else (_ROOT,)
    counter = SyncCounter()
    originals = {name: getattr(torch.Tensor, name) for name in CONVERSIONS if hasattr(torch.Tensor, name)}
    own = {name: torch.Tensor.__dict__[name] for name in originals if name in torch.Tensor.__dict__}

    def wrap(name, fn):
        def counted(self, *args, **kwargs):
            caller = sys._getframe(1)
            path = caller.f_code.co_filename
            if path.startswith(roots):
                counter.total += 1
                counter._since_mark += 1
                site = f"{Path(path).name}:{caller.f_lineno} {name}"
                counter.by_site[site] = counter.by_site.get(site, 0) + 1
                counter.events.append(site)
            return fn(self, *args, **kwargs)
        return counted

    for name, fn in originals.items():
        setattr(torch.Tensor, name, wrap(name, fn))
    try:
        yield counter
    finally:
        for name in originals:                  # put back exactly what was there (own or inherited)
            if name in own:
                setattr(torch.Tensor, name, own[name])
            else:
                delattr(torch.Tensor, name)
