"""Fully connected networks: a classifier, and a mirrored autoencoder for reconstruction tasks.

Autoencoder (the continuation papers' shape): d–w1–…–wk–code–wk–…–w1–d with the homotopy-capable
activation on every hidden layer and linear code and output layers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

from torch import nn

from contnet.continuation.homotopy import make_activation
from contnet.registry import MODELS, ConfigError
from contnet.schema import opt
from .common import (ACTIVATIONS, ModelConfig, autoencoder_widths, finish, hidden_widths, in_features,
                     init_weights, new_lambda, resolve_init)


@dataclass
class MLPConfig(ModelConfig):
    """`model=mlp`: fully connected; an autoencoder d–widths–code–reversed(widths)–d on *_ae tasks."""
    objectives = ("classify", "reconstruct")
    closed_form_start = True

    depth: int = opt(2, gt=0, integer=True)   # hidden layers (used when widths is null)
    width: int = opt(128, gt=0, integer=True)
    # explicit hidden widths, e.g. [200, 100, 50] (the papers' depth-8 AE); wins over depth and width
    widths: Optional[List[int]] = None
    # autoencoder widths when widths is null: auto = narrow towards the code as the papers do, [200, 100, 50]
    # for inputs > 200 (MNIST, Fashion-MNIST, CIFAR-10), else [32, 16, 8] (digits, mnist1d); a list; or
    # null = depth × width like a classifier
    ae_widths: Any = "auto"
    activation: str = opt("relu", choices=ACTIVATIONS)
    # homotopy (inherited): homotopy activations σ_λ; auto: on when the optimizer is a continuation method
    # auto = pca exactly when a continuation optimizer trains a reconstruction task and the widths allow it
    # (d ≥ w1 ≥ … ≥ code; logged), else default (torch).  pca: the closed-form PCA start of an autoencoder.
    # Comparisons set pca for all arms.
    init: str = opt("auto", choices=("auto", "default", "xavier", "orthogonal", "pca"))
    # also put the (homotopy) activation on the output layer (the papers' parity MLP)
    output_activation: bool = False

    def check(self) -> None:
        super().check()
        if not (self.ae_widths in (None, "auto") or isinstance(self.ae_widths, (list, tuple))):
            raise self.error("ae_widths", "must be auto, null or a list of positive integers")
        self.check_widths("widths", "ae_widths")

    def check_task(self, task, homotopy) -> None:
        super().check_task(task, homotopy)
        if self.init == "pca" and task.objective != "reconstruct":
            raise self.error("init", f"is the closed-form start of an autoencoder and {task.words} is not "
                                     "an autoencoder task; use a *_ae task, or model.init=default")


def _stack(sizes: list[int], act: str, lam, last_linear: bool = True) -> nn.Sequential:
    """Linear layers between consecutive sizes, an activation after each except (optionally) the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if not (last_linear and i == len(sizes) - 2):
            layers.append(make_activation(act, lam))
    return nn.Sequential(*layers)


class MLP(nn.Module):
    def __init__(self, sizes: list[int], activation: str, lam=None, output_activation: bool = False):
        super().__init__()
        self.net = _stack(sizes, activation, lam, last_linear=not output_activation)

    def forward(self, x):
        return self.net(x.flatten(1))


class MLPAutoencoder(nn.Module):
    """`encoder` and `decoder` are nn.Sequential; their nn.Linear layers in order are what the PCA
    start (contnet.continuation.pca) initialises."""

    def __init__(self, d: int, widths: list[int], code: int, activation: str, lam=None):
        super().__init__()
        self.encoder = _stack([d, *widths, code], activation, lam)
        self.decoder = _stack([code, *reversed(widths), d], activation, lam)

    def forward(self, x):
        return self.decoder(self.encoder(x.flatten(1)))


@MODELS.register("mlp", config=MLPConfig)
def build_mlp(cfg, task):
    lam = new_lambda(cfg)
    d = in_features(task)
    if task.meta.objective == "reconstruct":
        widths = autoencoder_widths(cfg, d)
        model = MLPAutoencoder(d, widths, int(task.meta.code_size), cfg.activation, lam)
    elif task.meta.objective == "classify":
        widths = hidden_widths(cfg)
        model = MLP([d, *widths, task.meta.output_dim], cfg.activation, lam,
                    output_activation=cfg.output_activation)
    else:
        raise ConfigError(f"model=mlp cannot serve task objective '{task.meta.objective}'; use a language model")
    init = resolve_init(cfg, task, lam, widths)
    init_weights(model, init)
    if init == "pca":
        if task.meta.objective != "reconstruct":
            raise ConfigError("model.init=pca is the closed-form start of an autoencoder; use it with a *_ae task")
        from contnet.continuation.pca import pca_init_autoencoder
        pca_init_autoencoder(model, task.tensors("train")[0].flatten(1))
    return finish(model, lam)
