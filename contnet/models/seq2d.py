"""Sequential2D: a network as a block matrix of functions, iterated as a dynamical system.

Conventions (spec sequential2d.md §4.1):
- paper orientation: `blocks[i][j]` maps source slot j to target slot i (like `nn.Linear.weight`,
  which is (out, in)); `orientation="code"` accepts the transposed grids of the reference code;
- one application is a Jacobi update, every block reads the old state:
      z_i' = A_i( b_i + sum_j f_ij(z_j) )
  with one bias b_i and one activation A_i per *target slot*, applied after the sum;
- `None` in the list form means "not yet alive": a None source contributes nothing, a row with no
  live contribution stays None and its bias/activation are skipped (`empty="zeros"` switches to
  the zero-vector reading, spec §5-A6);
- inputs are never written to: every sum is out of place.

`IteratedSequential2D` runs T applications; for acyclic patterns it evaluates the same fixed point
with one topological pass (proof in `_plan_topological`).  `RecurrentSequential2D` feeds a sequence,
one element per time step, like `nn.RNN`.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .seq2d_blocks import IDENTITY, LINEAR, block_features, block_kind, linear_parts

Slots = list  # list[Tensor | None]


def transpose_grid(blocks: Sequence[Sequence[nn.Module | None]]) -> list[list[nn.Module | None]]:
    """Code orientation (row = source) <-> paper orientation (row = target)."""
    rows = [list(r) for r in blocks]
    if not rows:
        return []
    return [[rows[i][j] for i in range(len(rows))] for j in range(len(rows[0]))]


def _is_identity_activation(act) -> bool:
    return act is None or isinstance(act, nn.Identity)


class Sequential2D(nn.Module):
    """One application of the block map F: flat `(…, Σin) -> (…, Σout)` or list -> list."""

    def __init__(self, in_sizes: Sequence[int], out_sizes: Sequence[int],
                 blocks: Sequence[Sequence[nn.Module | None]], *,
                 bias: bool | Sequence[bool] = False,
                 activations: nn.Module | None | Sequence[nn.Module | None] = None,
                 orientation: Literal["paper", "code"] = "paper",
                 empty: Literal["none", "zeros"] = "none"):
        super().__init__()
        if orientation not in ("paper", "code"):
            raise ValueError(f"orientation must be 'paper' or 'code', got {orientation!r}")
        if empty not in ("none", "zeros"):
            raise ValueError(f"empty must be 'none' or 'zeros', got {empty!r}")
        grid = transpose_grid(blocks) if orientation == "code" else [list(r) for r in blocks]
        self.in_sizes, self.out_sizes = [int(s) for s in in_sizes], [int(s) for s in out_sizes]
        self.in_features, self.out_features = sum(self.in_sizes), sum(self.out_sizes)
        self.empty = empty
        n_out, n_in = len(self.out_sizes), len(self.in_sizes)
        if len(grid) != n_out or any(len(r) != n_in for r in grid):
            shape = f"{len(grid)}x{[len(r) for r in grid]}"
            raise ValueError(f"Sequential2D: the block grid must be {n_out} rows (targets) x {n_in} "
                             f"columns (sources) in {orientation} orientation, got {shape}")

        self.blocks = nn.ModuleDict()
        # Per target row: the live (source, kind, key) cells, fixed here so forward never scans Nones.
        self._sources: list[tuple[tuple[int, str, str], ...]] = []
        for i, row in enumerate(grid):
            cells = []
            for j, block in enumerate(row):
                if block is None:
                    continue
                self._check_block(i, j, block)
                key = f"{i},{j}"
                self.blocks[key] = block
                cells.append((j, block_kind(block), key))
            self._sources.append(tuple(cells))

        flags = [bool(bias)] * n_out if isinstance(bias, bool) else [bool(b) for b in bias]
        if len(flags) != n_out:
            raise ValueError(f"Sequential2D: bias has {len(flags)} entries for {n_out} target slots")
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.zeros(d)) if f else None for d, f in zip(self.out_sizes, flags)])
        self.reset_slot_biases()

        if activations is None or isinstance(activations, nn.Module):
            acts = [activations] * n_out
        else:
            acts = list(activations)
        if len(acts) != n_out:
            raise ValueError(f"Sequential2D: {len(acts)} activations for {n_out} target slots")
        self.activations = nn.ModuleList([nn.Identity() if a is None else a for a in acts])
        self._has_act = [not _is_identity_activation(a) for a in acts]

    # ---------------------------------------------------------------- construction helpers
    def _check_block(self, i: int, j: int, block) -> None:
        if not isinstance(block, nn.Module):
            raise TypeError(f"Sequential2D: cell ({i},{j}) must be an nn.Module or None, "
                            f"got {type(block).__name__}")
        fin, fout = block_features(block)
        din, dout = self.in_sizes[j], self.out_sizes[i]
        where = f"cell ({i},{j}) (target slot {i}, source slot {j}) holds {type(block).__name__}"
        if fin is not None and fin != din:
            raise ValueError(f"Sequential2D: {where} with in_features={fin}, but source slot {j} "
                             f"has size {din}")
        if fout is not None and fout != dout:
            raise ValueError(f"Sequential2D: {where} with out_features={fout}, but target slot {i} "
                             f"has size {dout}")
        if block_kind(block) == IDENTITY and din != dout:
            raise ValueError(f"Sequential2D: {where}, an identity needs equal sizes, but source "
                             f"slot {j} has {din} and target slot {i} has {dout}")

    @torch.no_grad()
    def reset_slot_biases(self) -> None:
        """U(±1/sqrt(row fan-in)): what one nn.Linear over the concatenated sources would use."""
        for i, b in enumerate(self.biases):
            if b is None:
                continue
            fan_in = sum(self.in_sizes[j] for j, _, _ in self._sources[i]) or 1
            b.uniform_(-fan_in ** -0.5, fan_in ** -0.5)

    def block(self, i: int, j: int) -> nn.Module | None:
        key = f"{i},{j}"
        return self.blocks[key] if key in self.blocks else None

    def sources(self, i: int) -> list[int]:
        """Source slots read by target slot i (the sparsity pattern of row i)."""
        return [j for j, _, _ in self._sources[i]]

    # ---------------------------------------------------------------- forward
    def row(self, i: int, z: Slots):
        """Target slot i from the state z (a list of slots); None when nothing in it is alive."""
        lin_x, lin_w, lin_b, terms = [], [], [], []
        for j, kind, key in self._sources[i]:
            x = z[j]
            if x is None:
                continue
            block = self.blocks[key]
            if kind == LINEAR:
                w, b = linear_parts(block)
                lin_x.append(x)
                lin_w.append(w)
                if b is not None:
                    lin_b.append(b)
            elif kind == IDENTITY:
                terms.append(x)
            else:
                terms.append(block(x))
        bias = self.biases[i]
        for b in lin_b:  # blocks that carry their own bias (e.g. shared nn.Linear) add to the slot's
            bias = b if bias is None else bias + b
        if lin_x:
            if len(lin_x) == 1:
                out = F.linear(lin_x[0], lin_w[0], bias)
            else:  # fused row: W_i [z_j1; z_j2; ...] == sum_j W_ij z_j, one matmul
                out = F.linear(torch.cat(lin_x, -1), torch.cat(lin_w, 1), bias)
        elif terms:
            out = terms.pop(0)
            if bias is not None:
                out = out + bias
        elif self.empty == "zeros":
            ref = next((t for t in z if t is not None), None)
            if ref is None:
                return None
            out = ref.new_zeros(ref.shape[:-1] + (self.out_sizes[i],))
            if bias is not None:
                out = out + bias
        else:
            return None
        for t in terms:
            out = out + t  # out of place: `out` may be a caller's tensor (identity cell)
        return self.activations[i](out) if self._has_act[i] else out

    def forward_list(self, z: Slots) -> Slots:
        if len(z) != len(self.in_sizes):
            raise ValueError(f"Sequential2D: got {len(z)} slots, expected {len(self.in_sizes)} "
                             f"(sizes {self.in_sizes})")
        for j, t in enumerate(z):
            if t is not None and t.shape[-1] != self.in_sizes[j]:
                raise ValueError(f"Sequential2D: slot {j} has {t.shape[-1]} features, expected "
                                 f"{self.in_sizes[j]}")
        z = list(z) if self.empty == "none" else self._zero_fill(z)
        return [self.row(i, z) for i in range(len(self.out_sizes))]

    def _zero_fill(self, z: Slots) -> Slots:
        ref = next((t for t in z if t is not None), None)
        if ref is None:
            return list(z)
        return [ref.new_zeros(ref.shape[:-1] + (d,)) if t is None else t
                for t, d in zip(z, self.in_sizes)]

    def split(self, flat: torch.Tensor, sizes: Sequence[int] | None = None) -> Slots:
        sizes = self.in_sizes if sizes is None else sizes
        if flat.shape[-1] != sum(sizes):
            raise ValueError(f"Sequential2D: flat input has {flat.shape[-1]} features, expected "
                             f"{sum(sizes)} = sum of slot sizes {list(sizes)}")
        return list(torch.split(flat, list(sizes), dim=-1))

    def join(self, z: Slots, like: torch.Tensor, sizes: Sequence[int] | None = None) -> torch.Tensor:
        """Concatenate slots; a None slot becomes zeros of the reference dtype/device."""
        sizes = self.out_sizes if sizes is None else sizes
        parts = [like.new_zeros(like.shape[:-1] + (d,)) if t is None else t for t, d in zip(z, sizes)]
        return torch.cat(parts, dim=-1)

    def forward(self, z):
        if isinstance(z, (list, tuple)):
            return self.forward_list(list(z))
        return self.join(self.forward_list(self.split(z)), like=z)

    step = forward

    # ---------------------------------------------------------------- accounting and inspection
    def n_trainable(self) -> int:
        return count_trainable(self)

    def n_stored(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def to_dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W, b) with W (Σout, Σin), for maps whose cells are linear, identity or Scale blocks."""
        from .seq2d_blocks import Scale
        ref = next(iter(self.parameters()), torch.zeros(()))
        W = ref.new_zeros(self.out_features, self.in_features)
        b = ref.new_zeros(self.out_features)
        oo = [0] + list(torch.cumsum(torch.tensor(self.out_sizes), 0).tolist())
        oi = [0] + list(torch.cumsum(torch.tensor(self.in_sizes), 0).tolist())
        for i, cells in enumerate(self._sources):
            if self.biases[i] is not None:
                b[oo[i]:oo[i + 1]] += self.biases[i]
            for j, kind, key in cells:
                block = self.blocks[key]
                sub = W[oo[i]:oo[i + 1], oi[j]:oi[j + 1]]
                if kind == LINEAR:
                    w, bb = linear_parts(block)
                    sub += w
                    if bb is not None:
                        b[oo[i]:oo[i + 1]] += bb
                elif kind == IDENTITY:
                    sub += torch.eye(self.in_sizes[j], dtype=W.dtype, device=W.device)
                elif isinstance(block, Scale):
                    sub += torch.diag(block.gain.expand(self.in_sizes[j]))
                else:
                    raise TypeError(f"to_dense: cell ({i},{j}) holds {type(block).__name__}, "
                                    f"which is not linear")
        return W, b


def count_trainable(model: nn.Module) -> int:
    """Trainable degrees of freedom: each parameter once (tied cells count once), masked entries
    excluded via the blocks' own `n_trainable()`, frozen tensors excluded."""
    seen: set[int] = set()
    total = 0
    for m in model.modules():
        if m is model or not hasattr(m, "n_trainable") or isinstance(m, Sequential2D) \
                or isinstance(m, (IteratedSequential2D, RecurrentSequential2D)):
            continue
        params = list(m.parameters())
        if any(id(p) in seen for p in params):
            continue
        seen.update(id(p) for p in params)
        total += int(m.n_trainable())
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel() if p.requires_grad else 0
    return total


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
                    and self.map.biases[s] is None and not self.map._has_act[s]):
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
        z = self.initial_state(x, None)
        held = {s: z[s] for s in self.input_slots}
        vals: Slots = [None] * len(z)
        for s in self._held_slots():
            vals[s] = held[s]
        if self.map.empty == "zeros":
            # a row may read a never-written slot; under 'zeros' that slot is zero, not None
            vals = self.map._zero_fill(vals)
        for i in self._topo_order:
            vals[i] = self.map.row(i, vals)
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
