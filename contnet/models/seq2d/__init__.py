"""Sequential2D: a network as a block matrix of functions F = [f_ij], iterated as a dynamical system.

    core.py         one application of the block map (`Sequential2D`)
    iterated.py     T applications, the topological fast path, sequences (`IteratedSequential2D`, `RecurrentSequential2D`)
    blocks.py       cell types (`Identity`, `Scale`, `MaskedLinear`)
    builders.py     named patterns: mlp, resnet, dense, rnn, and conversions from nn.Sequential / nn.RNN
    layout.py       the layout mini-language of `model.grid.layout` (I, W, W=p, D, S, Z cells)
    equivalence.py  the exact check: the CLI's MLP and its Sequential2D form agree in fp64
    model.py        `model=seq2d`: its typed config (Seq2DConfig) and registry builder
"""
from .blocks import Identity, MaskedLinear, Scale, random_mask
from .builders import dense, from_rnn, from_sequential, iterated_rnn, mlp, resnet, rnn, rnn_map
from .core import Sequential2D, count_trainable, transpose_grid
from .iterated import IteratedSequential2D, RecurrentSequential2D
from .layout import from_block_masks, from_layout, parse_cell
from . import model  # noqa: F401  (registers model=seq2d)

__all__ = ["Identity", "MaskedLinear", "Scale", "random_mask", "dense", "from_rnn", "from_sequential",
           "iterated_rnn", "mlp", "resnet", "rnn", "rnn_map", "Sequential2D", "count_trainable",
           "transpose_grid", "IteratedSequential2D", "RecurrentSequential2D", "from_block_masks",
           "from_layout", "parse_cell"]
