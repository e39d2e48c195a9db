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

The iterated map (T applications, the topological fast path, sequences) is in iterated.py.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import IDENTITY, LINEAR, block_features, block_kind, linear_parts

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

    counts_children = True  # n_trainable() sums its blocks; count_trainable must not recurse twice

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
        self._slot_keys = [str(i) for i in range(n_out)]  # keys of biases / activations
        # Plain references to the containers' dicts: forward reads them without nn.Module.__getattr__
        # (the same dict objects, so later assignments such as activations[2] = Tanh() are seen).
        self._block_of, self._bias_of = self.blocks._modules, self.biases._parameters
        self._act_of = self.activations._modules

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
    def has_activation(self, i: int) -> bool:
        return not _is_identity_activation(self._act_of[str(i)])

    def _activate(self, key: str, out: torch.Tensor) -> torch.Tensor:
        act = self._act_of[key]
        return out if type(act) is nn.Identity else act(out)

    def row(self, i: int, z: Slots):
        """Target slot i from the state z (a list of slots); None when nothing in it is alive."""
        cells, key_i = self._sources[i], self._slot_keys[i]
        bias = self._bias_of.get(key_i)
        if len(cells) == 1 and cells[0][1] == LINEAR and z[cells[0][0]] is not None:
            # a chain row (MLP): exactly nn.Linear's op, no lists or concatenation
            w, b = linear_parts(self._block_of[cells[0][2]])
            if b is not None:
                bias = b if bias is None else bias + b
            return self._activate(key_i, F.linear(z[cells[0][0]], w, bias))

        lin_x, lin_w, lin_b, terms = [], [], [], []
        for j, kind, key in cells:
            x = z[j]
            if x is None:
                continue
            block = self._block_of[key]
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
        return self._activate(key_i, out)

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
        from .blocks import Scale
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
    """Trainable degrees of freedom (masked entries excluded, tied cells once): see count_parameters."""
    from ..common import count_parameters
    return count_parameters(model)[0]
