"""Learning-rate schedules stepped once per training step (torch.optim.lr_scheduler underneath)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch.optim import lr_scheduler

from contnet.registry import SCHEDULERS
from contnet.schema import Options, opt


@dataclass
class NoScheduleConfig(Options):
    """scheduler=none: a constant learning rate."""


@dataclass
class WarmupDecayOptions(Options):
    """A linear warm-up over `warmup_steps`, then a decay to min_lr_ratio·lr at the last step."""
    warmup_steps: int = opt(0, ge=0, integer=True)
    min_lr_ratio: float = opt(0.0, ge=0, le=1)


@dataclass
class CosineConfig(WarmupDecayOptions):
    """scheduler=cosine: optional linear warm-up, then cosine decay to min_lr_ratio·lr at the last step."""


@dataclass
class LinearWarmupConfig(WarmupDecayOptions):
    """scheduler=linear_warmup: linear warm-up, then linear decay (the LoRA E2E recipe uses 500 warm-up steps)."""
    warmup_steps: int = opt(100, ge=0, integer=True)


@dataclass
class StepConfig(Options):
    """scheduler=step: multiply lr by gamma every step_size steps."""
    step_size: int = opt(1000, ge=1, integer=True)
    gamma: float = opt(0.1, gt=0)


@SCHEDULERS.register("none", config=NoScheduleConfig)
def none(cfg, optimizer, total_steps):
    return None


def warmup_then(cfg: WarmupDecayOptions, total_steps: int, decay):
    """A LambdaLR factor: (step+1)/warmup during the warm-up, then decay(t, min_lr_ratio) with t ∈ [0, 1]."""
    warmup, floor = cfg.warmup_steps, cfg.min_lr_ratio

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return decay(min(1.0, (step - warmup) / max(1, total_steps - warmup)), floor)
    return factor


@SCHEDULERS.register("cosine", config=CosineConfig)
def cosine(cfg: CosineConfig, optimizer, total_steps):
    return lr_scheduler.LambdaLR(optimizer, warmup_then(
        cfg, total_steps, lambda t, floor: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))))


@SCHEDULERS.register("linear_warmup", config=LinearWarmupConfig)
def linear_warmup(cfg: LinearWarmupConfig, optimizer, total_steps):
    """Linear warm-up for `warmup_steps`, then linear decay to `min_lr_ratio`·lr at the last step
    (the LoRA E2E recipe's schedule)."""
    return lr_scheduler.LambdaLR(optimizer, warmup_then(cfg, total_steps, lambda t, floor: floor + (1 - floor) * (1 - t)))


@SCHEDULERS.register("step", config=StepConfig)
def step(cfg: StepConfig, optimizer, total_steps):
    return lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
