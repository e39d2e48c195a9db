"""What the model builders share: the base of their typed configs, λ creation, sizes from the task, weight init."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from contnet.continuation.state import LambdaState, attach_lambda
from contnet.registry import ConfigError
from contnet.schema import Options, opt

log = logging.getLogger("contnet")

ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu")


@dataclass
class ModelConfig(Options):
    """Base of every model option's typed config (conf/model/<name>.yaml)."""
    # shapes come from the task's metadata (False: the model carries its own shipped shapes, e.g. a
    # language model, so `contnet params` need not build the task)
    needs_task: ClassVar[bool] = True

    # the task objectives its builder serves (contnet.tasks.base.OBJECTIVES), checked before a run by
    # check_task; () = not checked
    objectives: ClassVar[tuple[str, ...]] = ()
    # a causal language model: decoder blocks (what peft=lora/solo adapt) and no homotopy points of its own
    language_model: ClassVar[bool] = False
    # model.init=auto can give the closed-form λ=0 (PCA) start of an autoencoder (models/common.py resolve_init)
    closed_form_start: ClassVar[bool] = False

    # a model-level λ (homotopy points read it) when the optimizer is a continuation method; auto: the runner
    # sets it from optimizer.homotopy (engine/run.py resolve_auto); called directly, auto = the standard network
    homotopy: Any = opt("auto", choices=("auto", True, False))

    def check_widths(self, *keys: str) -> None:
        """Each of `keys` is null or a non-empty list of positive integers (hidden widths).  An empty list is
        refused: the builders read it as "not given" and would build the default widths."""
        for key in keys:
            widths = getattr(self, key)
            if isinstance(widths, (list, tuple)) and not widths:
                default = "auto (or null)" if key == "ae_widths" else "null"
                raise self.error(key, f"must be a non-empty list of positive integers, e.g. [200,100,50]; for the "
                                      f"default widths write model.{key}={default}")
            if isinstance(widths, (list, tuple)) and not all(
                    isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
                raise self.error(key, "must be a list of positive integers, e.g. [200,100,50]")

    def decoder_blocks(self) -> int | None:
        """The number of decoder blocks of a language model's shipped shape (None: no such blocks, or unknown)."""
        return None

    def check_task(self, task, homotopy: str | None) -> None:
        """Refuse, as the builder would, a task this model cannot serve; `task` is a contnet.schema.TaskFacts,
        `homotopy` names what gives the model a λ (e.g. 'optimizer=cadam' or 'model.homotopy=true'), None when it
        has none.  Only rules that need no data belong here (the builder keeps its own checks)."""
        if self.objectives and task.objective not in self.objectives:
            from contnet.registry import MODELS
            others = [n for n in MODELS.names() if task.objective in MODELS.config(n).objectives]
            lms = all(MODELS.config(n).language_model for n in others)
            use = (f"a language model (model={'|'.join(others)})" if lms and others
                   else " or ".join(f"model={n}" for n in others) or "another model")
            raise ConfigError(f"model={self.name}: cannot serve {task.words}; use {use}")


def new_lambda(cfg) -> LambdaState | None:
    """One λ per model when the (already resolved) `model.homotopy` is true; λ=1 = standard network."""
    homotopy = cfg.homotopy
    if homotopy == "auto":        # the runner resolves auto from the optimizer; called directly: standard network
        homotopy = False
    return LambdaState(1.0) if bool(homotopy) else None


def finish(model: nn.Module, lam: LambdaState | None) -> nn.Module:
    if lam is not None:
        attach_lambda(model, lam)
    return model


def in_features(task) -> int:
    return math.prod(task.meta.input_shape)


def hidden_widths(cfg) -> list[int]:
    """`model.widths` (explicit list) wins; otherwise `depth` copies of `width`."""
    widths = list(cfg.widths) if cfg.widths else [int(cfg.width)] * int(cfg.depth)
    return [int(w) for w in widths]


def autoencoder_widths(cfg, d: int) -> list[int]:
    """Hidden widths of an MLP autoencoder.  `model.widths` wins; else `model.ae_widths`: a list, null
    (depth × width, as for classifiers) or auto = narrow towards the code as in the continuation papers:
    [200, 100, 50] for inputs wider than 200 (MNIST, Fashion-MNIST, CIFAR-10), else [32, 16, 8]
    (digits 64, mnist1d 40), so the closed-form λ=0 start (widths ≤ input, non-growing) applies."""
    if cfg.widths:
        return hidden_widths(cfg)
    ae = cfg.ae_widths
    if ae == "auto":
        return [200, 100, 50] if d > 200 else [32, 16, 8]
    if ae:
        return [int(w) for w in ae]
    return hidden_widths(cfg)


def closed_form_blocker(widths: list[int], d: int, code: int, n_train: int) -> str:
    """'' when the sequential-SVD (PCA) start fits this autoencoder, else why it does not."""
    sizes = [d, *widths, code]
    if any(b > a for a, b in zip(sizes[:-1], sizes[1:])):
        return (f"its layer widths {sizes} grow somewhere; the closed-form start needs d ≥ w1 ≥ … ≥ code "
                "(e.g. model.ae_widths=auto)")
    if max(sizes[1:]) > n_train:
        return f"a layer is wider than the {n_train} training examples"
    return ""


def resolve_init(cfg, task, lam, widths: list[int]) -> str:
    """`model.init`, with auto resolved: the closed-form λ=0 (PCA) start exactly when a continuation
    optimizer drives λ (the model has λ; the runner resolves auto to default for plain optimizers),
    the task is a reconstruction and the autoencoder's widths allow it; the standard init otherwise."""
    init = str(cfg.init)
    if init != "auto":
        return init
    if lam is None or task.meta.objective != "reconstruct":
        return "default"
    d = in_features(task)
    why = closed_form_blocker(widths, d, int(task.meta.code_size), int(task.meta.sizes.get("train", 0)))
    if why:
        log.info("model.init=auto: standard init, not the closed-form λ=0 (PCA) start: %s", why)
        return "default"
    log.info("model.init=auto: closed-form λ=0 start (PCA of the training data, spec §1.3) for the "
             "%s autoencoder", "–".join(map(str, [d, *widths, task.meta.code_size])))
    return "pca"


def init_weights(model: nn.Module, scheme: str) -> None:
    """torch defaults, or Glorot-uniform / orthogonal (the continuation papers' choices)."""
    if scheme in ("default", "pca", "auto"):     # auto: a builder that has no closed-form start
        return
    fn = {"xavier": nn.init.xavier_uniform_, "orthogonal": nn.init.orthogonal_}.get(scheme)
    if fn is None:
        raise ConfigError(f"model.init='{scheme}' is unknown; choose auto, default, xavier, orthogonal or pca")
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fn(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) degrees of freedom, each tensor once (tied weights count once).

    A submodule may define `n_trainable()` to count its own parameters (masked Sequential2D blocks
    exclude their masked-out entries); everything else counts `numel()` of parameters that require grad.
    """
    seen: set[int] = set()
    trainable = 0
    for m in model.modules():
        if m is model or not hasattr(m, "n_trainable") or getattr(m, "counts_children", False):
            continue
        params = list(m.parameters())
        if any(id(p) in seen for p in params):
            continue
        seen.update(id(p) for p in params)
        trainable += int(m.n_trainable())
    total = 0
    for p in {id(p): p for p in model.parameters()}.values():
        total += p.numel()
        if id(p) not in seen:
            trainable += p.numel() if p.requires_grad else 0
    return trainable, total
