"""Closed-form start of an autoencoder (continuation spec §1.3): at λ=0 the network is linear and the
sequential-SVD weights make it exactly the rank-k PCA projector of the centred training data.

Encoder widths d0 > d1 > … > dm: H0 = X − mean; for each layer j, H_{j-1} = U S Vᵀ (thin SVD),
W_j = V[:, :d_j], H_j = H_{j-1} W_j.  The decoder mirrors the encoder with the transposes (initial
values only; encoder and decoder stay untied).  Each H_{j-1} is already in principal coordinates, so
the composite W_1…W_m W_mᵀ…W_1ᵀ equals V_k V_kᵀ (Eckart–Young optimum of the linear AE).

Centring (ambiguity A12, best reading: centre train *and* validation with the training mean): the
mean is folded into the biases — first-layer bias = −mean·W_1, last-layer bias = +mean, all other
biases = `bias` (0 by default; the authors' code used 1e-4).  The network then computes
mean + f(x − mean) for every input, so validation is centred with the training mean without any
change to the task, and the gradients equal those of the explicitly centred problem.
"""
from __future__ import annotations

import torch
from torch import nn

from contnet.registry import ConfigError


def _linear_layers(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def fix_signs(Vh: torch.Tensor) -> torch.Tensor:
    """An SVD's singular vectors are defined up to sign, and LAPACK's choice can change with the thread
    count or the library build.  Convention: the largest-magnitude entry of each right singular
    vector (row of Vh) is positive, so the closed-form start is the same wherever it is computed."""
    idx = Vh.abs().argmax(dim=1, keepdim=True)
    signs = torch.sign(Vh.gather(1, idx))
    return Vh * torch.where(signs == 0, torch.ones_like(signs), signs)


def sequential_svd_bases(X: torch.Tensor, widths: list[int]) -> list[torch.Tensor]:
    """Encoder weight matrices W_j (d_{j-1} × d_j) of the sequential SVD of the centred data X."""
    H = X - X.mean(0, keepdim=True)
    bases = []
    for d in widths:
        _, _, Vh = torch.linalg.svd(H, full_matrices=False)
        Vh = fix_signs(Vh)
        if Vh.shape[0] < d:
            raise ConfigError(f"model.init=pca needs layer width {d} ≤ rank bound {Vh.shape[0]} "
                              "(encoder widths must not grow and must not exceed the number of examples)")
        W = Vh[:d].T.contiguous()
        bases.append(W)
        H = H @ W
    return bases


@torch.no_grad()
def pca_init_autoencoder(model: nn.Module, X: torch.Tensor, bias: float = 0.0) -> torch.Tensor:
    """Set a mirrored MLP autoencoder's Linear layers to the sequential-SVD closed form; returns the
    training mean.  The Linear layers, in module order, must be d0→d1→…→dm→…→d1→d0."""
    layers = _linear_layers(model)
    X = X.flatten(1)
    m = len(layers) // 2
    shapes = [(l.in_features, l.out_features) for l in layers]
    mirrored = (len(layers) % 2 == 0 and m > 0 and shapes[0][0] == X.shape[1]
                and all(shapes[i] == shapes[-1 - i][::-1] for i in range(m))
                and all(shapes[i][1] == shapes[i + 1][0] for i in range(len(shapes) - 1)))
    if not mirrored:
        raise ConfigError(f"model.init=pca needs a mirrored MLP autoencoder with input {X.shape[1]}; "
                          f"got Linear shapes {shapes}")
    widths = [out for _, out in shapes[:m]]
    work = X.to(dtype=torch.float64 if X.dtype != torch.float64 else X.dtype, device="cpu")
    mean = work.mean(0)
    bases = sequential_svd_bases(work, widths)
    decoder = layers[m:]
    for j, W in enumerate(bases):
        enc, dec = layers[j], decoder[m - 1 - j]
        enc.weight.copy_(W.T.to(enc.weight))             # nn.Linear stores (out, in) = W_jᵀ
        dec.weight.copy_(W.to(dec.weight))                # mirror: decoder layer applies W_jᵀ
        for lin in (enc, dec):
            if lin.bias is not None:
                lin.bias.fill_(bias)
    if layers[0].bias is None or layers[-1].bias is None:
        raise ConfigError("model.init=pca folds the training mean into the first and last biases; "
                          "the autoencoder's first and last Linear layers need bias=True")
    layers[0].bias.copy_((-(mean @ bases[0]) + bias).to(layers[0].bias))
    layers[-1].bias.copy_((mean + bias).to(layers[-1].bias))
    return mean.to(X)
