"""The layout mini-language: a Sequential2D grid written cell by cell (YAML `model.grid.layout`).

A layout is a square list of rows in paper orientation (row = target slot, column = source slot); each
cell is one of
    null / 0   empty (no block)
    I          identity (equal sizes)
    W          dense linear, U(±1/sqrt(row fan-in)) (spec §4.5)
    W=p        masked linear with exactly a fraction p of trainable entries (spec §1.5)
    D / S      diagonal / scalar learnable gain, init 1 (a weighted skip, spec §5-A1)
    Z          dense linear initialised to zero (a skip that starts switched off)
`from_block_masks` writes a layout from a matrix of densities.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .blocks import Identity, Scale
from .builders import _activation, _empty_grid, _linear
from .core import Sequential2D
from .iterated import IteratedSequential2D


def parse_cell(spec, in_size: int, out_size: int, bound: float,
               generator: torch.Generator | None = None) -> nn.Module | None:
    """One layout cell: null/0 (empty), I (identity), W (dense), W=p (masked, density p),
    D / S (diagonal / scalar gain, init 1), Z (dense, zero init: a homotopy-style skip)."""
    if spec is None or spec in (0, "0", "", "None", "null", "."):
        return None
    text = str(spec).strip().upper()
    if text == "I":
        return Identity(in_size) if in_size == out_size else _bad(spec, "I needs equal sizes")
    if text in ("D", "S"):
        if in_size != out_size:
            return _bad(spec, "a gain needs equal sizes")
        return Scale(in_size, diagonal=text == "D")
    if text == "Z":
        return _linear(in_size, out_size, bound=0.0)
    if text == "W":
        return _linear(in_size, out_size, bound=bound)
    if text.startswith("W="):
        return _linear(in_size, out_size, bound=bound, density=float(text[2:]), generator=generator)
    return _bad(spec, "use one of null, I, W, W=<density>, D, S, Z")


def _bad(spec, why: str):
    raise ValueError(f"layout cell {spec!r}: {why}")


def from_layout(sizes: Sequence[int], layout: Sequence[Sequence], *, activations: Sequence,
                num_iterations: int | None = None, lam=None, bias: bool | Sequence[bool] = True,
                generator: torch.Generator | None = None, **iterate) -> IteratedSequential2D:
    """A square grid written cell by cell (paper orientation); `activations[i]` is a name or None.

    Linear cells draw U(±1/sqrt(row fan-in)) (spec §4.5).  T defaults to the depth when the
    pattern is acyclic; a recurrent layout must give `num_iterations`.
    """
    sizes = [int(s) for s in sizes]
    n = len(sizes)
    if len(layout) != n or any(len(r) != n for r in layout):
        raise ValueError(f"layout must be {n}x{n} for {n} slots, got "
                         f"{len(layout)} rows of lengths {[len(r) for r in layout]}")
    grid = _empty_grid(n)
    for i, row in enumerate(layout):
        fan_in = sum(sizes[j] for j, c in enumerate(row) if c not in (None, 0, "0", "")) or 1
        for j, cell in enumerate(row):
            grid[i][j] = parse_cell(cell, sizes[j], sizes[i], 1.0 / math.sqrt(fan_in), generator)
    acts = [None if a in (None, "none", "identity") else _activation(a, lam) for a in activations]
    if isinstance(bias, bool):  # no bias on a held input slot (it would stop being x)
        bias = [bias and any(c is not None for c in grid[i]) and not
                (i in iterate.get("input_slots", (0,)) and isinstance(grid[i][i], Identity))
                for i in range(n)]
    step = Sequential2D(sizes, sizes, grid, bias=bias, activations=acts)
    probe = IteratedSequential2D(step, num_iterations=1, **iterate)
    if num_iterations is None:
        if probe.depth is None:
            raise ValueError("this layout is recurrent: give num_iterations")
        num_iterations = probe.depth
    return IteratedSequential2D(step, num_iterations=num_iterations, **iterate)


def from_block_masks(sizes: Sequence[int], densities: Sequence[Sequence[float]], *,
                     activation: str = "relu", lam=None, num_iterations: int | None = None,
                     generator: torch.Generator | None = None, **iterate) -> IteratedSequential2D:
    """Layout from a density matrix: 0 = no block, 1 = dense, 0 < p < 1 = masked (spec §1.5).
    Row 0 keeps x with an identity; hidden slots get `activation`, the last slot none."""
    n = len(sizes)
    layout = [["I" if (i == 0 and j == 0) else (None if i == 0 or not densities[i][j] else
               "W" if densities[i][j] >= 1 else f"W={densities[i][j]}") for j in range(n)]
              for i in range(n)]
    acts = [None] + [activation] * (n - 2) + [None]
    return from_layout(sizes, layout, activations=acts, num_iterations=num_iterations, lam=lam,
                       generator=generator, **iterate)
