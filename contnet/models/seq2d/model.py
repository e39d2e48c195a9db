"""`model=seq2d`: a Sequential2D network built from the task's sizes; its typed config is Seq2DConfig.

Sizes come from `task.meta`: the flattened input, the hidden widths of the config, and the output
(classes), or for objective `reconstruct` an autoencoder in -> widths -> code -> reversed -> out.
With `model.homotopy` true every hidden slot's activation is a homotopy activation reading one
model-level λ, so the continuation optimizers (optimizer=cadam) drive the whole grid.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, List, Optional

from contnet.errors import fmt
from contnet.registry import MODELS, ConfigError
from contnet.schema import Block, opt
from ..common import ACTIVATIONS, ModelConfig, finish, hidden_widths, in_features, new_lambda
from .builders import SKIPS, dense, iterated_rnn, mlp, resnet
from .layout import from_layout

PATTERNS = ("mlp", "resnet", "dense", "rnn", "grid")
SIZE_NAMES = ("in", "out", "code")


@dataclass
class Seq2DResNetOptions(Block):
    """`model.resnet.*` (pattern=resnet)."""
    group: ClassVar[str] = "model.resnet"
    # skip cell h_{l-1} → h_l: identity (ResNet) | scalar | diag | linear (weighted skips, spec §5-A1)
    skip: str = opt("identity", choices=SKIPS)
    skip_init: float = 1.0               # initial gain of a weighted skip (1.0: starts as the plain ResNet, spec §4.3)
    hidden: Optional[int] = opt(None, gt=0, integer=True)   # width of the branch slot u_l (null: width)
    # false: h = S(h) + g(h), the spec's explicit loop (§4.3); true: σ after the sum (He et al.)
    post_activation: bool = False


@dataclass
class Seq2DDenseOptions(Block):
    """`model.dense.*` (pattern=dense)."""
    group: ClassVar[str] = "model.dense"
    # zero: long skips start at 0, training starts from the MLP (spec §5-A1 best reading) | row: U(±1/√row fan-in)
    skip_init: str = opt("zero", choices=("zero", "row"))


@dataclass
class Seq2DRNNOptions(Block):
    """`model.rnn.*` (pattern=rnn)."""
    group: ClassVar[str] = "model.rnn"
    # T for the recurrent pattern (spec §5-A4: 4 in the reference MNIST runs)
    iterations: int = opt(4, gt=0, integer=True)
    nonlinearity: str = opt("tanh", choices=("tanh", "relu"))   # hidden slot activation of the RNN


@dataclass
class Seq2DGridOptions(Block):
    """`model.grid.*` (pattern=grid): a square block layout in paper orientation (row = target).
    Example (an MLP with one zero-initialised long skip x → h2):
        sizes: [in, 128, 64, out]
        layout: [[I, null, null, null], [W, null, null, null], [Z, W, null, null], [null, null, W, null]]"""
    group: ClassVar[str] = "model.grid"
    # slot sizes; integers or in | out | code (from the task), e.g. [in, 128, 64, out]
    sizes: Optional[List[Any]] = None
    # per slot: an activation name or null; a null list: identity on first and last, `activation` between
    activations: Optional[List[Any]] = None
    # cells (contnet/models/seq2d/layout.py): null (empty) | I (identity) | W (dense) | W=0.3 (masked, density)
    # | D / S (diagonal / scalar gain) | Z (zero-initialised dense)
    layout: Optional[List[Any]] = None

    def check(self) -> None:
        super().check()
        for s in self.sizes or ():
            if not (s in SIZE_NAMES or (isinstance(s, int) and not isinstance(s, bool) and s > 0)):
                raise self.error("sizes", f"entry {s!r} must be a positive integer or one of in, out, code")
        for a in self.activations or ():
            if a not in (None, "none", "identity", *ACTIVATIONS):
                raise self.error("activations", f"entry {a!r} must be null, identity or one of "
                                 f"{', '.join(ACTIVATIONS)}")
        if self.layout is not None and not all(isinstance(r, (list, tuple)) for r in self.layout):
            raise self.error("layout", "must be a list of rows (a square list of lists of cells)")


@dataclass
class Seq2DConfig(ModelConfig):
    """`model=seq2d`: Sequential2D, the network as a block matrix F=[f_ij] (row i = target slot, column j =
    source slot) iterated T times (Jacobi).  homotopy (inherited): homotopy activations σ_λ on every hidden
    slot; auto: on when the optimizer is a continuation method."""
    objectives = ("classify", "reconstruct")

    # mlp | resnet | dense (lower-triangular skips) | rnn (recurrent, input re-injected) | grid (layout below)
    pattern: str = opt("mlp", choices=PATTERNS)
    # hidden layers (mlp, dense) or residual blocks (resnet); used when widths is null
    depth: int = opt(2, gt=0, integer=True)
    width: int = opt(128, gt=0, integer=True)   # hidden slot width (resnet/rnn: the state width)
    # explicit hidden widths for mlp/dense, e.g. [256, 128]; autoencoders mirror them around task.code_size
    widths: Optional[List[int]] = None
    # slot activation on hidden slots (input and output slots: identity)
    activation: str = opt("relu", choices=ACTIVATIONS)
    # mlp/dense: fraction of trainable entries per linear block; < 1 gives masked blocks (masked entries are
    # not counted)
    density: float = opt(1.0, gt=0, le=1)
    # T; null: the pattern's depth (feed-forward: extra steps change nothing), rnn: rnn.iterations
    iterations: Optional[int] = opt(None, gt=0, integer=True)
    # null: the pattern's default — once for feed-forward, an identity cell keeps x alive (spec §5-A5 best
    # reading); every_step for rnn
    inject: Optional[str] = opt(None, choices=("once", "every_step"))
    # non-input slots start as none ("not yet alive", spec §5-A6 best reading) | zeros
    init_state: str = opt("none", choices=("none", "zeros"))
    # auto: one topological pass when provably equal to T Jacobi steps (acyclic, T ≥ depth) | jacobi | topological
    schedule: str = opt("auto", choices=("auto", "jacobi", "topological"))
    resnet: Seq2DResNetOptions = dataclasses.field(default_factory=Seq2DResNetOptions)
    dense: Seq2DDenseOptions = dataclasses.field(default_factory=Seq2DDenseOptions)
    rnn: Seq2DRNNOptions = dataclasses.field(default_factory=Seq2DRNNOptions)
    grid: Seq2DGridOptions = dataclasses.field(default_factory=Seq2DGridOptions)

    def check(self) -> None:
        super().check()
        self.check_widths("widths")
        for sub in (self.resnet, self.dense, self.rnn, self.grid):
            sub.check()
        if self.pattern == "grid" and not (self.grid.layout and self.grid.sizes):
            raise self.error("pattern", "needs model.grid.layout (a square list of cells) and model.grid.sizes")

    def check_task(self, task, homotopy) -> None:
        super().check_task(task, homotopy)
        if self.pattern in ("resnet", "rnn") and task.objective != "classify":
            raise self.error("pattern", f"is a classifier here and {task.words} is not; use model.pattern=mlp, "
                                        "dense or grid")
        if self.pattern == "grid" and "code" in (self.grid.sizes or ()) and task.objective != "reconstruct":
            raise ConfigError(f"model.grid.sizes={fmt(self.grid.sizes)}: code is the code layer of an autoencoder "
                              f"and {task.words} has none; use an integer size")


def _chain_sizes(cfg, task) -> list[int]:
    d, widths = in_features(task), hidden_widths(cfg)
    if task.meta.objective == "reconstruct":
        return [d, *widths, int(task.meta.code_size), *reversed(widths), int(task.meta.output_dim)]
    return [d, *widths, int(task.meta.output_dim)]


def _iterate_options(cfg: Seq2DConfig, **defaults) -> dict:
    """The IteratedSequential2D switches (each defaults to the spec's best reading)."""
    opts = dict(defaults, init=cfg.init_state, schedule=cfg.schedule)
    if cfg.inject is not None:
        opts["inject"] = cfg.inject
    return opts


def _resolve_size(value, task) -> int:
    named = {"in": in_features(task), "out": int(task.meta.output_dim), "code": task.meta.code_size}
    if isinstance(value, str):
        if named.get(value) is None:
            raise ConfigError(f"model.grid.sizes entry '{value}' is unknown for task "
                              f"{task.meta.name}; use an integer or one of in, out, code")
        return int(named[value])
    return int(value)


def _build(cfg: Seq2DConfig, task, lam):
    pattern, act, iterations = cfg.pattern, cfg.activation, cfg.iterations
    objective = task.meta.objective
    if objective not in ("classify", "reconstruct"):
        raise ConfigError(f"model=seq2d cannot serve task objective '{objective}'")
    if pattern in ("resnet", "rnn") and objective != "classify":
        raise ConfigError(f"model.pattern={pattern} is a classifier here; for reconstruction use "
                          "model.pattern=mlp, dense or grid")

    if pattern == "mlp":
        model = mlp(_chain_sizes(cfg, task), act, lam=lam, density=cfg.density, **_iterate_options(cfg))
    elif pattern == "dense":
        model = dense(_chain_sizes(cfg, task), act, lam=lam, density=cfg.density,
                      skip_init=cfg.dense.skip_init, **_iterate_options(cfg))
    elif pattern == "resnet":
        r = cfg.resnet
        model = resnet(in_features(task), cfg.width, cfg.depth, int(task.meta.output_dim),
                       activation=act, skip=r.skip, skip_init=r.skip_init, hidden=r.hidden,
                       post_activation=r.post_activation, lam=lam, **_iterate_options(cfg))
    elif pattern == "rnn":
        model = iterated_rnn(in_features(task), cfg.width, int(task.meta.output_dim),
                             iterations or cfg.rnn.iterations, nonlinearity=cfg.rnn.nonlinearity, lam=lam,
                             **_iterate_options(cfg, inject="every_step"))
    else:
        g = cfg.grid
        sizes = [_resolve_size(s, task) for s in g.sizes]
        acts = list(g.activations) if g.activations else [None] + [act] * (len(sizes) - 2) + [None]
        try:
            model = from_layout(sizes, [list(r) for r in g.layout], activations=acts, lam=lam,
                                num_iterations=iterations, **_iterate_options(cfg))
        except ValueError as e:
            raise ConfigError(f"model.grid: {e}") from e
    if iterations is not None and pattern in ("mlp", "dense", "resnet"):
        model.num_iterations = iterations
    return model


@MODELS.register("seq2d", config=Seq2DConfig)
def build_seq2d(cfg: Seq2DConfig, task):
    lam = new_lambda(cfg)
    try:
        model = _build(cfg, task, lam)
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"model=seq2d: {e}") from e
    return finish(model, lam)
