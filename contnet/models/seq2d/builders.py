"""Named Sequential2D patterns (spec sequential2d.md §1.3, §4.2), each with the T it needs.

All grids are in paper orientation (row = target slot).  Slot 0 is the input x, kept alive by an
identity cell so that extra iterations leave a feed-forward output unchanged (spec §1.2); the last
slot is the output.  Biases and activations belong to target slots; blocks are bias-free, except
in `from_sequential`, which shares the given `nn.Linear`s (and so their biases) as they are.

`activation` is a name understood by `contnet.continuation.homotopy.make_activation`; with a
`LambdaState` `lam` every hidden slot gets the homotopy activation (1-λ)v + λσ(v).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .core import Sequential2D
from .iterated import IteratedSequential2D, RecurrentSequential2D
from .blocks import Identity, MaskedLinear, Scale, random_mask

SKIPS = ("identity", "scalar", "diag", "linear")


def _activation(name: str, lam=None) -> nn.Module:
    from contnet.continuation.homotopy import make_activation
    return make_activation(name, lam)


def _linear(in_features: int, out_features: int, *, bound: float | None = None,
            density: float = 1.0, generator: torch.Generator | None = None) -> nn.Module:
    """A bias-free linear block; U(±bound) weights (default: nn.Linear's 1/sqrt(in_features)).
    density < 1 gives a MaskedLinear with exactly that fraction of trainable entries."""
    bound = 1.0 / math.sqrt(in_features) if bound is None else bound
    if density < 1.0:
        block = MaskedLinear(in_features, out_features,
                             random_mask(out_features, in_features, density, generator))
    else:
        block = nn.Linear(in_features, out_features, bias=False)
    with torch.no_grad():
        block.weight.uniform_(-bound, bound)
        if isinstance(block, MaskedLinear):
            block.weight.mul_(block.mask)
    return block


def _empty_grid(n: int) -> list[list[nn.Module | None]]:
    return [[None] * n for _ in range(n)]


# ------------------------------------------------------------------------------------------ MLP
def mlp(sizes: Sequence[int], activation: str = "relu", *, lam=None, density: float = 1.0,
        generator: torch.Generator | None = None, **iterate) -> IteratedSequential2D:
    """[x, h_1, ..., y] with f_{l,l-1} = W_l; equals Linear-σ-...-Linear after T = L steps."""
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least [in, out] sizes, got {sizes}")
    n = len(sizes)
    with torch.random.fork_rng(devices=[]):  # construction draws are discarded, see below
        grid = _empty_grid(n)
        grid[0][0] = Identity(sizes[0])
        for l in range(1, n):
            grid[l][l - 1] = _linear(sizes[l - 1], sizes[l], density=density, generator=generator)
        acts = [None] + [_activation(activation, lam) for _ in range(n - 2)] + [None]
        step = Sequential2D(sizes, sizes, grid, bias=[False] + [True] * (n - 1), activations=acts)
    # Draw weight then bias layer by layer, as nn.Linear does: the same seed then gives exactly
    # the weights of the equivalent nn.Sequential (model=mlp), so the two train identically.
    with torch.no_grad():
        for l in range(1, n):
            bound = 1.0 / math.sqrt(sizes[l - 1])
            block = step.block(l, l - 1)
            block.weight.uniform_(-bound, bound)
            if isinstance(block, MaskedLinear):
                block.weight.mul_(block.mask)
            step.biases[l].uniform_(-bound, bound)
    return IteratedSequential2D(step, num_iterations=n - 1, **iterate)


def from_sequential(seq: nn.Sequential, **iterate) -> IteratedSequential2D:
    """Sequential2D view of Linear, (modules...), Linear, ... sharing the given modules.

    Each Linear becomes the block into a new slot; the modules after it (activations, dropout)
    become that slot's activation.  Parameters are the same tensors, not copies.
    """
    layers = list(seq)
    if not layers or not isinstance(layers[0], nn.Linear):
        first = type(layers[0]).__name__ if layers else "nothing"
        raise ValueError(f"from_sequential: the Sequential must start with nn.Linear, got {first}")
    groups: list[tuple[nn.Linear, list[nn.Module]]] = []
    for layer in layers:
        if isinstance(layer, nn.Linear):
            groups.append((layer, []))
        else:
            groups[-1][1].append(layer)
    sizes = [groups[0][0].in_features] + [lin.out_features for lin, _ in groups]
    n = len(sizes)
    grid = _empty_grid(n)
    grid[0][0] = Identity(sizes[0])
    acts: list[nn.Module | None] = [None]
    for l, (lin, post) in enumerate(groups, start=1):
        if lin.in_features != sizes[l - 1]:
            raise ValueError(f"from_sequential: Linear #{l} has in_features={lin.in_features}, "
                             f"but the previous layer gives {sizes[l - 1]}")
        grid[l][l - 1] = lin
        acts.append(None if not post else post[0] if len(post) == 1 else nn.Sequential(*post))
    step = Sequential2D(sizes, sizes, grid, activations=acts)
    return IteratedSequential2D(step, num_iterations=n - 1, **iterate)


# ------------------------------------------------------------------------------------ ResNet
def _skip_block(kind: str, width: int, init: float) -> nn.Module:
    if kind == "identity":
        return Identity(width)
    if kind in ("scalar", "diag"):
        return Scale(width, diagonal=kind == "diag", init=init)
    if kind == "linear":
        # skip_init: no random draw, so every skip kind leaves the other blocks' init unchanged
        block = torch.nn.utils.skip_init(nn.Linear, width, width, bias=False)
        with torch.no_grad():
            block.weight.copy_(init * torch.eye(width))
        return block
    raise ValueError(f"skip must be one of {', '.join(SKIPS)}, got {kind!r}")


def resnet(in_features: int, width: int, depth: int, out_features: int, *,
           activation: str = "relu", skip: str = "identity", skip_init: float = 1.0,
           hidden: int | None = None, post_activation: bool = False, lam=None,
           **iterate) -> IteratedSequential2D:
    """Residual MLP: h_0 = W_s x + b, h_l = S_l(h_{l-1}) + W_b σ(W_a h_{l-1} + b_a) + b_b, y = W_y h_D + b.

    Slots [x, h_0, u_1, h_1, ..., u_D, h_D, y]: the branch's hidden u_l has its own slot, so the
    skip S_l is a separate cell (h_l <- h_{l-1}), a "weighted skip connection" when it is a
    learnable gain (scalar, diag or linear; spec §5-A1), starting at `skip_init` (1 = ResNet).
    `post_activation=True` puts σ on h_0 and on every h_l after the sum (He et al.'s
    act(y + skip)); the default is the spec's explicit loop h = h + g(h) (§4.3).  T = 2 * depth + 2.
    """
    hidden = hidden or width
    sizes = [in_features, width]
    for _ in range(depth):
        sizes += [hidden, width]
    sizes.append(out_features)
    n = len(sizes)
    grid = _empty_grid(n)
    grid[0][0] = Identity(in_features)
    grid[1][0] = _linear(in_features, width)
    post = (lambda: _activation(activation, lam)) if post_activation else (lambda: None)
    acts: list[nn.Module | None] = [None, post()]
    for l in range(depth):
        h_prev, u, h = 1 + 2 * l, 2 + 2 * l, 3 + 2 * l
        grid[u][h_prev] = _linear(width, hidden)
        grid[h][u] = _linear(hidden, width)
        grid[h][h_prev] = _skip_block(skip, width, skip_init)
        acts += [_activation(activation, lam), post()]
    grid[n - 1][n - 2] = _linear(width, out_features)
    acts.append(None)
    step = Sequential2D(sizes, sizes, grid, bias=[False] + [True] * (n - 1), activations=acts)
    # the branch bias should follow the branch's own fan-in, not branch + skip
    with torch.no_grad():
        for l in range(depth):
            step.biases[3 + 2 * l].uniform_(-hidden ** -0.5, hidden ** -0.5)
    return IteratedSequential2D(step, num_iterations=2 * depth + 2, **iterate)


# ---------------------------------------------------------------------- dense lower triangle
def dense(sizes: Sequence[int], activation: str = "relu", *, skip_init: str = "zero",
          density: float = 1.0, lam=None, generator: torch.Generator | None = None,
          **iterate) -> IteratedSequential2D:
    """Every block below the diagonal: h_i = σ(b_i + Σ_{j<i} W_ij z_j), DenseNet with sums.

    skip_init="zero" (spec §5-A1 best reading): long skips (j < i-1) start at 0, so training
    starts from the MLP with the same chain; "row": every block U(±1/sqrt(row fan-in)), as one
    Linear over the concatenated sources would be.  T = L.
    """
    if skip_init not in ("zero", "row"):
        raise ValueError(f"skip_init must be 'zero' or 'row', got {skip_init!r}")
    sizes = [int(s) for s in sizes]
    n = len(sizes)
    grid = _empty_grid(n)
    grid[0][0] = Identity(sizes[0])
    for i in range(1, n):
        row_bound = 1.0 / math.sqrt(sum(sizes[:i]))
        for j in range(i):
            long_skip = j < i - 1
            bound = (0.0 if long_skip else None) if skip_init == "zero" else row_bound
            grid[i][j] = _linear(sizes[j], sizes[i], bound=bound, density=density,
                                 generator=generator)
    acts = [None] + [_activation(activation, lam) for _ in range(n - 2)] + [None]
    step = Sequential2D(sizes, sizes, grid, bias=[False] + [True] * (n - 1), activations=acts)
    if skip_init == "zero":  # slot bias from the chain block's fan-in, as in the MLP
        with torch.no_grad():
            for i in range(1, n):
                step.biases[i].uniform_(-sizes[i - 1] ** -0.5, sizes[i - 1] ** -0.5)
    return IteratedSequential2D(step, num_iterations=n - 1, **iterate)


# --------------------------------------------------------------------------------------- RNN
def rnn_map(input_size: int, hidden_size: int, output_size: int | None = None, *,
            nonlinearity: str = "tanh", lam=None) -> Sequential2D:
    """[x, h] or [x, h, y]: h' = σ(W_xh x + W_hh h + b_h), y' = W_hy h + b_y (x is injected)."""
    sizes = [input_size, hidden_size] + ([output_size] if output_size else [])
    n = len(sizes)
    bound = 1.0 / math.sqrt(hidden_size)  # nn.RNN's init
    grid = _empty_grid(n)
    grid[1][0] = _linear(input_size, hidden_size, bound=bound)
    grid[1][1] = _linear(hidden_size, hidden_size, bound=bound)
    acts = [None, _activation(nonlinearity, lam)]
    if output_size:
        grid[2][1] = _linear(hidden_size, output_size)
        acts.append(None)
    step = Sequential2D(sizes, sizes, grid, bias=[False] + [True] * (n - 1), activations=acts)
    with torch.no_grad():
        step.biases[1].uniform_(-bound, bound)
    return step


def rnn(input_size: int, hidden_size: int, output_size: int | None = None, *,
        nonlinearity: str = "tanh", steps_per_input: int = 1, batch_first: bool = False,
        lam=None) -> RecurrentSequential2D:
    """Sequence RNN: one element per time step; outputs are y (or h without a readout)."""
    step = rnn_map(input_size, hidden_size, output_size, nonlinearity=nonlinearity, lam=lam)
    return RecurrentSequential2D(step, output_slots=(-1,), steps_per_input=steps_per_input,
                                 batch_first=batch_first)


def iterated_rnn(input_size: int, hidden_size: int, output_size: int, num_iterations: int, *,
                 nonlinearity: str = "tanh", lam=None, **iterate) -> IteratedSequential2D:
    """A static input re-injected every step into the recurrent map (diagonal W_hh block)."""
    step = rnn_map(input_size, hidden_size, output_size, nonlinearity=nonlinearity, lam=lam)
    iterate.setdefault("inject", "every_step")
    return IteratedSequential2D(step, num_iterations=num_iterations, **iterate)


@torch.no_grad()
def from_rnn(module: nn.RNN, steps_per_input: int = 1) -> RecurrentSequential2D:
    """Copy a one-layer nn.RNN (no transpose; b_h = b_ih + b_hh). `forward(x, [None, h0])` returns
    (output, state) with output == rnn(x)[0] and state[1] == h_n[0]."""
    if module.num_layers != 1 or module.bidirectional or getattr(module, "proj_size", 0):
        raise ValueError("from_rnn supports num_layers=1, unidirectional, no projection")
    step = rnn_map(module.input_size, module.hidden_size, nonlinearity=module.nonlinearity)
    step = step.to(module.weight_ih_l0.dtype)
    step.block(1, 0).weight.copy_(module.weight_ih_l0)
    step.block(1, 1).weight.copy_(module.weight_hh_l0)
    if module.bias:
        step.biases[1].copy_(module.bias_ih_l0 + module.bias_hh_l0)
    else:
        step.biases[1].zero_()
    return RecurrentSequential2D(step, output_slots=(1,), steps_per_input=steps_per_input,
                                 batch_first=module.batch_first)
