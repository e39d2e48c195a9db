"""Iterating a square Sequential2D: T Jacobi steps on a static input, or one time step per element
of a sequence.

`IteratedSequential2D` evaluates, for acyclic patterns, the same result as T Jacobi steps with one
topological pass (proof in `_plan_topological`; tested against Jacobi in tests/models/seq2d/test_core.py).
`RecurrentSequential2D` feeds a sequence, one element per time step, like `nn.RNN`.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from .core import Sequential2D, Slots, count_trainable
from .blocks import IDENTITY


class IteratedSequential2D(nn.Module):
    """T applications of a square `Sequential2D`: z^(k+1) = F(z^(k)), x in the input slots.

    - `inject="once"`: x is written into z^(0) only (keep it alive with an identity cell, spec
      §5-A5); `"every_step"` overwrites the input slots before every application ([R2] "insert").
    - `init="none"`: non-input slots start as None (spec §5-A6 best reading); `"zeros"` optional.
    - `schedule="auto"`: one topological pass when it provably equals T Jacobi steps (acyclic
      pattern and T >= depth), else Jacobi; `"jacobi"` forces the reference semantics;
      `"topological"` raises when the equality does not hold.
    - forward returns the output slots concatenated, plus the list of states z^(1..T) when
      `return_trajectory=True`.
    """

    counts_children = True

    def __init__(self, map: Sequential2D, num_iterations: int, *, input_slots: Sequence[int] = (0,),
                 output_slots: Sequence[int] = (-1,), inject: Literal["once", "every_step"] = "once",
                 init: Literal["none", "zeros"] = "none", return_trajectory: bool = False,
                 schedule: Literal["auto", "jacobi", "topological"] = "auto"):
        super().__init__()
        if map.in_sizes != map.out_sizes:
            raise ValueError(f"IteratedSequential2D needs a square map (in sizes == out sizes), got "
                             f"{map.in_sizes} -> {map.out_sizes}")
        if inject not in ("once", "every_step") or init not in ("none", "zeros") \
                or schedule not in ("auto", "jacobi", "topological"):
            raise ValueError(f"bad option: inject={inject!r}, init={init!r}, schedule={schedule!r}")
        if num_iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
        n = len(map.in_sizes)
        self.map = map
        self.num_iterations = int(num_iterations)
        self.input_slots = [s % n for s in input_slots]
        self.output_slots = [s % n for s in output_slots]
        self.inject, self.init, self.schedule = inject, init, schedule
        self.return_trajectory = return_trajectory
        self.in_features = sum(map.in_sizes[s] for s in self.input_slots)
        self.out_features = sum(map.out_sizes[s] for s in self.output_slots)
        self._held = sorted(self._held_slots())
        self.depth, self._topo_order = self._plan_topological()
        if schedule == "topological" and not self.uses_topological():
            raise ValueError(f"schedule='topological' needs an acyclic pattern and num_iterations >= "
                             f"depth; depth={self.depth}, num_iterations={self.num_iterations}")

    def _held_slots(self) -> set[int]:
        """Input slots whose value is x before every application."""
        if self.inject == "every_step":
            return set(self.input_slots)
        held = set()
        for s in self.input_slots:
            cells = self.map._sources[s]
            if (len(cells) == 1 and cells[0][0] == s and cells[0][1] == IDENTITY
                    and self.map.biases[s] is None and not self.map.has_activation(s)):
                held.add(s)
        return held

    def _plan_topological(self):
        """Depth of the output slots and a topological order of their ancestors (None if cyclic).

        Claim: with held slots constant (depth 0) and depth(i) = 1 + max depth(sources of i)
        (1 for a row without sources), z_i^(k) equals the topological value v_i for every
        k >= depth(i), whatever z^(0) is.  Induction: at k >= depth(i) each source j has
        k-1 >= depth(j), so z_j^(k-1) = v_j and z_i^(k) = A_i(b_i + sum_j f_ij(v_j)) = v_i.
        So T >= max depth over the output slots' ancestors gives identical outputs.
        """
        held = self._held_slots()
        depth: dict[int, int] = {s: 0 for s in held}
        order: list[int] = []
        visiting: set[int] = set()

        def visit(i: int) -> bool:
            if i in depth:
                return True
            if i in visiting:
                return False  # cycle through non-held slots
            visiting.add(i)
            srcs = self.map.sources(i)
            if not all(visit(j) for j in srcs):
                return False
            visiting.discard(i)
            depth[i] = 1 + max((depth[j] for j in srcs), default=0)
            order.append(i)
            return True

        if not all(visit(o) for o in self.output_slots):
            return None, None
        return max(depth[o] for o in self.output_slots), order

    def uses_topological(self) -> bool:
        return (self.schedule != "jacobi" and self.depth is not None
                and self.num_iterations >= self.depth and not self.return_trajectory)

    def initial_state(self, x, state: Slots | None = None) -> Slots:
        n = len(self.map.in_sizes)
        xs = x if isinstance(x, (list, tuple)) else self.map.split(
            x, [self.map.in_sizes[s] for s in self.input_slots])
        if len(xs) != len(self.input_slots):
            raise ValueError(f"expected {len(self.input_slots)} input tensors, got {len(xs)}")
        if state is not None:
            z = list(state)
            if len(z) != n:
                raise ValueError(f"state has {len(z)} slots, expected {n}")
        elif self.init == "zeros":
            ref = xs[0]
            z = [ref.new_zeros(ref.shape[:-1] + (d,)) for d in self.map.in_sizes]
        else:
            z = [None] * n
        for s, t in zip(self.input_slots, xs):
            z[s] = t
        return z

    def output(self, z: Slots) -> torch.Tensor:
        parts = [z[s] for s in self.output_slots]
        for s, t in zip(self.output_slots, parts):
            if t is None:
                raise ValueError(f"output slot {s} is still None after {self.num_iterations} "
                                 f"iterations; the pattern needs num_iterations >= {self.depth}")
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def run_jacobi(self, x, state: Slots | None = None) -> list[Slots]:
        """The reference semantics: the states z^(1), ..., z^(T)."""
        z = self.initial_state(x, state)
        xs = [z[s] for s in self.input_slots]
        trajectory = []
        for k in range(self.num_iterations):
            if k and self.inject == "every_step":
                z = list(z)
                for s, t in zip(self.input_slots, xs):
                    z[s] = t
            z = self.map.forward_list(z)
            trajectory.append(z)
        return trajectory

    def run_topological(self, x) -> Slots:
        """One pass over the output slots' ancestors in topological order (see _plan_topological)."""
        if isinstance(x, (list, tuple)) or len(self.input_slots) > 1:
            xs = self.initial_state(x)
        else:  # the common case, one input slot: no split
            if x.shape[-1] != self.in_features:
                raise ValueError(f"input has {x.shape[-1]} features, expected {self.in_features}")
            xs = [None] * len(self.map.in_sizes)
            xs[self.input_slots[0]] = x
        vals: Slots = [None] * len(xs)
        for s in self._held:
            vals[s] = xs[s]
        if self.map.empty == "zeros":
            # a row may read a never-written slot; under 'zeros' that slot is zero, not None
            ref = next(t for t in xs if t is not None)
            vals = [ref.new_zeros(ref.shape[:-1] + (d,)) if v is None else v
                    for v, d in zip(vals, self.map.in_sizes)]
        row = self.map.row
        for i in self._topo_order:
            vals[i] = row(i, vals)
        return vals

    def forward(self, x, state: Slots | None = None):
        if x is not None and not isinstance(x, (list, tuple)) and x.dim() > 2 \
                and x.shape[-1] != self.in_features:
            x = x.flatten(1)  # images etc.: (B, C, H, W) -> (B, C*H*W)
        if state is None and self.uses_topological():
            return self.output(self.run_topological(x))
        trajectory = self.run_jacobi(x, state)
        out = self.output(trajectory[-1])
        return (out, trajectory) if self.return_trajectory else out

    def n_trainable(self) -> int:
        return count_trainable(self)

    def extra_repr(self) -> str:
        return (f"num_iterations={self.num_iterations}, depth={self.depth}, inject={self.inject}, "
                f"input_slots={self.input_slots}, output_slots={self.output_slots}, "
                f"schedule={'topological' if self.uses_topological() else 'jacobi'}")


class RecurrentSequential2D(nn.Module):
    """A sequence through a square map: at time t, x_t goes into the input slots, then K Jacobi
    applications.  Returns (outputs per step stacked on the time axis, final state list).

    Shapes follow nn.RNN: x is (L, B, d) or (B, L, d) with `batch_first=True`.
    """

    counts_children = True

    def __init__(self, map: Sequential2D, *, input_slots: Sequence[int] = (0,),
                 output_slots: Sequence[int] = (-1,), steps_per_input: int = 1,
                 batch_first: bool = False):
        super().__init__()
        n = len(map.in_sizes)
        self.map = map
        self.input_slots = [s % n for s in input_slots]
        self.output_slots = [s % n for s in output_slots]
        self.steps_per_input, self.batch_first = int(steps_per_input), batch_first

    def forward(self, x: torch.Tensor, state: Slots | None = None):
        seq = x.transpose(0, 1) if self.batch_first else x
        z = list(state) if state is not None else [None] * len(self.map.in_sizes)
        sizes = [self.map.in_sizes[s] for s in self.input_slots]
        outs = []
        for x_t in seq:
            z = list(z)
            for s, t in zip(self.input_slots, self.map.split(x_t, sizes)):
                z[s] = t
            for _ in range(self.steps_per_input):
                z = self.map.forward_list(z)
            outs.append(self.map.join([z[s] for s in self.output_slots], like=x_t,
                                      sizes=[self.map.out_sizes[s] for s in self.output_slots]))
        out = torch.stack(outs, dim=1 if self.batch_first else 0)
        return out, z

    def n_trainable(self) -> int:
        return count_trainable(self)
