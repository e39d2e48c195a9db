"""Residual networks: CIFAR-style ResNet-(6n+2) for small images, torchvision resnet18 for larger
images, and a fully connected residual network for vector inputs (digits, mnist1d).

Skip homotopy (continuation spec §1.5): out = (1−λ)·act(y) + λ·act(y + shortcut(x)); λ=0 has no
skip, λ=1 is exactly the standard residual block.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from contnet.continuation.homotopy import HomotopySkip, make_activation
from contnet.registry import MODELS, ConfigError
from contnet.schema import opt
from .common import ACTIVATIONS, ModelConfig, finish, in_features, init_weights, new_lambda


@dataclass
class ResNetConfig(ModelConfig):
    """`model=resnet`: a residual classifier; homotopy (inherited): auto = on under a continuation optimizer."""
    objectives = ("classify",)

    # auto: fc for vectors, cifar for images ≤ 64 px, resnet18 (torchvision) above
    variant: str = opt("auto", choices=("auto", "fc", "cifar", "resnet18"))
    depth: int = opt(20, gt=0, integer=True)   # cifar: 6n+2 (20, 32, 44, 56, 110)
    width_mult: int = opt(1, gt=0, integer=True)   # cifar: channels 16k/32k/64k
    width: int = opt(128, gt=0, integer=True)   # fc: hidden width
    blocks: int = opt(3, ge=0, integer=True)   # fc: residual blocks
    activation: str = opt("relu", choices=ACTIVATIONS)
    skip_homotopy: bool = True           # with homotopy: out = (1−λ)·act(y) + λ·act(y + skip)  (λ=0: no skip)
    # auto: the standard init (a residual net has no closed-form start; the runner resolves auto)
    init: str = opt("default", choices=("auto", "default", "xavier", "orthogonal"))
    # (depth: 6n+2 is checked by CifarResNet itself, once the variant is resolved, and before a run by check_task)

    def check_task(self, task, homotopy) -> None:
        """The builder's rules that need no data: variant auto is fc for vectors and cifar for the (≤ 64 px)
        torchvision images; cifar and resnet18 need images; cifar needs depth 6n+2; resnet18 has no λ."""
        super().check_task(task, homotopy)
        variant = self.variant if self.variant != "auto" else ("cifar" if task.images else "fc")
        if variant in ("cifar", "resnet18") and not task.images:
            raise self.error("variant", f"needs image inputs (C, H, W) and {task.words} gives vectors; use "
                                        "model.variant=fc")
        if variant == "cifar" and ((self.depth - 2) % 6 != 0 or self.depth < 8):
            auto = " (model.variant=auto is cifar for images)" if self.variant == "auto" else ""
            raise self.error("depth", f"is not a CIFAR ResNet depth{auto}; use 6n+2 (20, 32, 44, 56, 110)")
        if variant == "resnet18" and homotopy:
            raise self.error("variant", f"torchvision's ResNet-18 has no homotopy points and {homotopy} needs "
                                        "them; use model.variant=cifar or fc, or a plain optimizer")


class FCBlock(nn.Module):
    def __init__(self, width: int, act: str, lam, skip_homotopy: bool):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)
        self.act1 = make_activation(act, lam)
        self.join = HomotopySkip(make_activation(act, lam), lam if skip_homotopy else None)

    def forward(self, x):
        return self.join(self.fc2(self.act1(self.fc1(x))), x)


class FCResNet(nn.Module):
    def __init__(self, d_in: int, d_out: int, width: int, blocks: int, act: str, lam, skip_homotopy: bool):
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(d_in, width), make_activation(act, lam))
        self.blocks = nn.Sequential(*[FCBlock(width, act, lam, skip_homotopy) for _ in range(blocks)])
        self.head = nn.Linear(width, d_out)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x.flatten(1))))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, act: str, lam, skip_homotopy: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act1 = make_activation(act, lam)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:   # projection shortcut (option B)
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.join = HomotopySkip(make_activation(act, lam), lam if skip_homotopy else None)

    def forward(self, x):
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.join(y, self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al. 2016 §4.2: 3 stages of n blocks, widths 16k/32k/64k, depth = 6n + 2."""

    def __init__(self, in_ch: int, classes: int, depth: int, width_mult: int, act: str, lam, skip_homotopy: bool):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ConfigError(f"model.depth={depth} is not a CIFAR ResNet depth; use 6n+2 (20, 32, 44, 56, 110)")
        n, w = (depth - 2) // 6, 16 * width_mult
        self.stem = nn.Sequential(nn.Conv2d(in_ch, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), make_activation(act, lam))
        layers, c = [], w
        for stage, c_out in enumerate((w, 2 * w, 4 * w)):
            for i in range(n):
                layers.append(BasicBlock(c, c_out, 2 if (stage > 0 and i == 0) else 1, act, lam, skip_homotopy))
                c = c_out
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Linear(c, classes)

    def forward(self, x):
        h = self.blocks(self.stem(x))
        return self.head(F.adaptive_avg_pool2d(h, 1).flatten(1))


def _torchvision_resnet18(in_ch: int, classes: int) -> nn.Module:
    import torchvision
    m = torchvision.models.resnet18(weights=None, num_classes=classes)
    if in_ch != 3:
        m.conv1 = nn.Conv2d(in_ch, 64, 7, 2, 3, bias=False)
    return m


@MODELS.register("resnet", config=ResNetConfig)
def build_resnet(cfg, task):
    if task.meta.objective != "classify":
        raise ConfigError("model=resnet is a classifier; for autoencoder tasks use model=mlp or model=seq2d")
    shape, classes = task.meta.input_shape, task.meta.output_dim
    variant = cfg.variant
    if variant == "auto":
        variant = "fc" if len(shape) == 1 else ("cifar" if shape[-1] <= 64 else "resnet18")
    lam = new_lambda(cfg)
    skip_h = cfg.skip_homotopy and lam is not None
    if variant == "fc":
        model = FCResNet(in_features(task), classes, int(cfg.width), int(cfg.blocks), cfg.activation, lam, skip_h)
    elif variant in ("cifar", "resnet18") and len(shape) != 3:
        raise ConfigError(f"model.variant={variant} needs image inputs (C, H, W); task gives {shape}; use model.variant=fc")
    elif variant == "cifar":
        model = CifarResNet(shape[0], classes, int(cfg.depth), int(cfg.width_mult), cfg.activation, lam, skip_h)
    else:                                  # resnet18 (the schema admits no other variant)
        if lam is not None:
            raise ConfigError("model.variant=resnet18 (torchvision) has no homotopy points; use variant=cifar or fc")
        model = _torchvision_resnet18(shape[0], classes)
    init_weights(model, cfg.init)
    return finish(model, lam)
