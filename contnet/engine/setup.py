"""What a run decides once, before the loop: the device, the precision, the model's placement and the
step budget (`Setup`).  `run()` prepares it while building; `fit()` receives it (or prepares it itself
when called as a library function)."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import torch

from contnet.parallel import Context, context
from contnet.registry import ConfigError
from .distributed import device_for
from .config import TrainerConfig

CUDNN_TF32_DEFAULT = torch.backends.cudnn.allow_tf32     # torch's own value, before any run changes it


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but no CUDA device is visible; use trainer.device=auto or cpu")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ConfigError(f"trainer.device='{name}' is unknown; choose auto, cpu or cuda[:N]")
    return torch.device(name)


@dataclass
class Precision:
    """Autocast dtype (None: fp32) and, for fp16, the gradient scaler.  Every precision steps through
    `optimizer.step(closure)`: under fp16 the closure scales the loss, unscales the gradients (λ's too)
    and drops them all when one is not finite, so the step is skipped (GradScaler's rule)."""
    device_type: str = "cpu"
    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def of(cls, name: str, device: torch.device) -> "Precision":
        if name == "auto":          # bf16 autocast where the GPU has it, fp32 elsewhere
            name = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
        if name == "fp32":
            return cls(device.type)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name)
        if dtype is None:
            raise ConfigError(f"trainer.precision='{name}' is unknown; choose fp32, bf16 or fp16")
        if dtype is torch.float16 and device.type != "cuda":
            raise ConfigError("trainer.precision=fp16 needs CUDA; use bf16 or fp32 on CPU")
        return cls(device.type, dtype, torch.amp.GradScaler("cuda") if dtype is torch.float16 else None)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def device_settings(model, tcfg: TrainerConfig, device: torch.device) -> None:
    """Cheap CUDA wins.  trainer.channels_last (auto: CUDA and a model with 2-D convolutions) stores conv
    weights NHWC, the layout tensor cores want; trainer.tf32 (auto: CUDA unless trainer.deterministic)
    allows TF32 matmuls and lets cuDNN benchmark its convolution algorithms.  Deterministic CUDA runs get
    CUBLAS_WORKSPACE_CONFIG, without which cuBLAS is not deterministic."""
    cuda = device.type == "cuda"
    layout = tcfg.channels_last
    has_conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    if layout is True or (layout == "auto" and cuda and has_conv):
        model.to(memory_format=torch.channels_last)
    # Every switch below is process-wide: set it both ways on every run (off = torch's default), so a job of
    # an in-process sweep never inherits an earlier job's setting.
    if cuda:
        on = tcfg.tf32 is True or (tcfg.tf32 == "auto" and not tcfg.deterministic)
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = True if on else CUDNN_TF32_DEFAULT
        torch.backends.cudnn.benchmark = on and not tcfg.deterministic
    if cuda and tcfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if device.type == "cpu":                 # x86: arithmetic on denormals is ~10x slower (bench_continuation)
        torch.set_flush_denormal(tcfg.flush_denormal)


def steps_per_epoch(task, tcfg: TrainerConfig, world_size: int = 1) -> int:
    """Optimizer steps per epoch; a data-parallel step consumes batch_size × world_size examples."""
    return max(1, task.num_train() // (tcfg.batch_size * world_size))


def total_steps(tcfg: TrainerConfig, steps_per_epoch: int) -> int:
    """trainer.max_steps, else max_epochs × steps per epoch (TrainerConfig.check: one of them is set)."""
    return tcfg.max_steps if tcfg.max_steps else tcfg.max_epochs * steps_per_epoch


@dataclass
class Setup:
    """Decided once per run.  `steps` is 0 until the task exists (`place`)."""
    device: torch.device
    precision: Precision
    ctx: Context = field(default_factory=Context)
    steps: int = 0

    @classmethod
    def choose(cls, tcfg: TrainerConfig, ctx: Context | None = None) -> "Setup":
        """Device and precision; a device or precision this machine lacks fails here, before any work."""
        ctx = ctx or context()
        device = pick_device(device_for(tcfg.device, ctx))
        return cls(device, Precision.of(tcfg.precision, device), ctx)

    def place(self, model, task, tcfg: TrainerConfig):
        """The model on its device in its layout (before the optimizer, so its state lives there too), and
        the step budget of this task.  Returns the model."""
        model.to(self.device)
        device_settings(model, tcfg, self.device)
        self.steps = total_steps(tcfg, steps_per_epoch(task, tcfg, self.ctx.world_size))
        return model

    @classmethod
    def prepare(cls, tcfg: TrainerConfig, model, task) -> "Setup":
        """For a library call of `fit`: choose the device and precision, place the model."""
        setup = cls.choose(tcfg)
        setup.place(model, task, tcfg)
        return setup
