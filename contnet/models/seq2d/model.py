"""`model=seq2d`: a Sequential2D network built from the task's sizes (conf/model/seq2d.yaml).

Sizes come from `task.meta`: the flattened input, the hidden widths of the config, and the output
(classes), or for objective `reconstruct` an autoencoder in -> widths -> code -> reversed -> out.
With `model.homotopy` true every hidden slot's activation is a homotopy activation reading one
model-level λ, so the continuation optimizers (optimizer=cadam) drive the whole grid.
"""
from __future__ import annotations

from contnet.registry import MODELS, ConfigError
from .common import finish, hidden_widths, in_features, new_lambda

PATTERNS = ("mlp", "resnet", "dense", "rnn", "grid")


def _chain_sizes(cfg, task) -> list[int]:
    d, widths = in_features(task), hidden_widths(cfg)
    if task.meta.objective == "reconstruct":
        return [d, *widths, int(task.meta.code_size), *reversed(widths), int(task.meta.output_dim)]
    return [d, *widths, int(task.meta.output_dim)]


def _iterate_options(cfg, **defaults) -> dict:
    """The IteratedSequential2D switches (each defaults to the spec's best reading)."""
    opts = dict(defaults)
    for key, cfg_key in (("inject", "inject"), ("init", "init_state"), ("schedule", "schedule")):
        value = cfg.get(cfg_key)
        if value is not None:
            opts[key] = str(value)
    return opts


def _resolve_size(value, task) -> int:
    named = {"in": in_features(task), "out": int(task.meta.output_dim),
             "code": task.meta.code_size}
    if isinstance(value, str):
        if value not in named or named[value] is None:
            raise ConfigError(f"model.grid.sizes entry '{value}' is unknown for task "
                              f"{task.meta.name}; use an integer or one of in, out, code")
        return int(named[value])
    return int(value)


def _build(cfg, task, lam):
    from . import seq2d_builders as B
    pattern, act = str(cfg.pattern), str(cfg.activation)
    density = float(cfg.get("density", 1.0))
    iterations = cfg.get("iterations")
    objective = task.meta.objective
    if pattern not in PATTERNS:
        raise ConfigError(f"model.pattern='{pattern}' is unknown; choose one of {', '.join(PATTERNS)}")
    if objective not in ("classify", "reconstruct"):
        raise ConfigError(f"model=seq2d cannot serve task objective '{objective}'")

    if pattern in ("mlp", "dense"):
        sizes = _chain_sizes(cfg, task)
        opts = _iterate_options(cfg)
        if pattern == "mlp":
            model = B.mlp(sizes, act, lam=lam, density=density, **opts)
        else:
            model = B.dense(sizes, act, lam=lam, density=density,
                            skip_init=str(cfg.dense.skip_init), **opts)
    elif pattern == "resnet":
        if objective != "classify":
            raise ConfigError("model.pattern=resnet is a classifier; for reconstruction use "
                              "model.pattern=mlp, dense or grid")
        r = cfg.resnet
        model = B.resnet(in_features(task), int(cfg.width), int(cfg.depth), int(task.meta.output_dim),
                         activation=act, skip=str(r.skip), skip_init=float(r.skip_init),
                         hidden=r.get("hidden"), post_activation=bool(r.post_activation), lam=lam,
                         **_iterate_options(cfg))
    elif pattern == "rnn":
        if objective != "classify":
            raise ConfigError("model.pattern=rnn is a classifier here; for reconstruction use "
                              "model.pattern=mlp, dense or grid")
        model = B.iterated_rnn(in_features(task), int(cfg.width), int(task.meta.output_dim),
                               int(iterations or cfg.rnn.iterations),
                               nonlinearity=str(cfg.rnn.nonlinearity), lam=lam,
                               **_iterate_options(cfg, inject="every_step"))
    else:
        g = cfg.grid
        if not g.get("layout"):
            raise ConfigError("model.pattern=grid needs model.grid.layout (a square list of cells) "
                              "and model.grid.sizes")
        sizes = [_resolve_size(s, task) for s in g.sizes]
        acts = g.get("activations")
        acts = list(acts) if acts else [None] + [act] * (len(sizes) - 2) + [None]
        try:
            model = B.from_layout(sizes, [list(r) for r in g.layout], activations=acts, lam=lam,
                                  num_iterations=None if iterations is None else int(iterations),
                                  **_iterate_options(cfg))
        except ValueError as e:
            raise ConfigError(f"model.grid: {e}") from e
    if iterations is not None and pattern in ("mlp", "dense", "resnet"):
        model.num_iterations = int(iterations)
    return model


@MODELS.register("seq2d")
def build_seq2d(cfg, task):
    lam = new_lambda(cfg)
    try:
        model = _build(cfg, task, lam)
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"model=seq2d: {e}") from e
    return finish(model, lam)
