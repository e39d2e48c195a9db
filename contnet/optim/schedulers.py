"""Learning-rate schedules stepped once per training step (torch.optim.lr_scheduler underneath)."""
from __future__ import annotations

import math

from torch.optim import lr_scheduler

from contnet.registry import SCHEDULERS, ConfigError


@SCHEDULERS.register("none")
def none(cfg, optimizer, total_steps):
    return None


@SCHEDULERS.register("cosine")
def cosine(cfg, optimizer, total_steps):
    warmup = int(cfg.get("warmup_steps", 0))
    floor = float(cfg.min_lr_ratio)

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    return lr_scheduler.LambdaLR(optimizer, factor)


@SCHEDULERS.register("linear_warmup")
def linear_warmup(cfg, optimizer, total_steps):
    """Linear warm-up for `warmup_steps`, then linear decay to `min_lr_ratio`·lr at the last step
    (the LoRA E2E recipe's schedule)."""
    warmup, floor = int(cfg.warmup_steps), float(cfg.min_lr_ratio)
    if warmup < 0:
        raise ConfigError(f"scheduler.warmup_steps={warmup} must be >= 0")

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return floor + (1 - floor) * (1 - t)
    return lr_scheduler.LambdaLR(optimizer, factor)


@SCHEDULERS.register("step")
def step(cfg, optimizer, total_steps):
    if int(cfg.step_size) <= 0:
        raise ConfigError(f"scheduler.step_size={cfg.step_size} must be a positive number of steps")
    return lr_scheduler.StepLR(optimizer, step_size=int(cfg.step_size), gamma=float(cfg.gamma))
