"""Fully connected networks: a classifier, and a mirrored autoencoder for reconstruction tasks.

Autoencoder (the continuation papers' shape): d–w1–…–wk–code–wk–…–w1–d with the homotopy-capable
activation on every hidden layer and linear code and output layers.
"""
from __future__ import annotations

from torch import nn

from contnet.continuation.homotopy import make_activation
from contnet.registry import MODELS, ConfigError
from .common import (autoencoder_widths, finish, hidden_widths, in_features, init_weights, new_lambda,
                     resolve_init)


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


@MODELS.register("mlp")
def build_mlp(cfg, task):
    lam = new_lambda(cfg)
    d = in_features(task)
    if task.meta.objective == "reconstruct":
        widths = autoencoder_widths(cfg, d)
        model = MLPAutoencoder(d, widths, int(task.meta.code_size), cfg.activation, lam)
    elif task.meta.objective == "classify":
        widths = hidden_widths(cfg)
        model = MLP([d, *widths, task.meta.output_dim], cfg.activation, lam,
                    output_activation=bool(cfg.get("output_activation", False)))
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
