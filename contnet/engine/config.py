"""trainer=default: the training loop's settings, one typed config (the Hydra schema of
conf/trainer/default.yaml and what `run()`/`fit()` read, by attribute)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from contnet.schema import Options, opt, typed

SWITCH = (True, False, "auto")


@dataclass
class TrainerConfig(Options):
    """trainer=default: the trainer group's one option, so no registry: `trainer_config` types a node directly and
    contnet.conf stores the class as schema/trainer/default."""
    group: ClassVar[str] = "trainer"
    option: ClassVar[str] = "default"
    max_epochs: Optional[int] = opt(20, gt=0, integer=True)       # used when max_steps is null
    max_steps: Optional[int] = opt(None, gt=0, integer=True)      # total optimizer steps; wins over max_epochs
    batch_size: int = opt(64, gt=0, integer=True)                 # per process: a data-parallel step sees batch_size × ranks
    eval_every: int = opt(50, ge=0, integer=True)                 # steps between validation passes (0: only at the end)
    eval_train: bool = True                         # also evaluate the full training set (train/full_loss)
    # before each evaluation, re-estimate BatchNorm statistics from this many training batches (0: off; no BN: no-op)
    bn_recalibrate: int = opt(10, ge=0, integer=True)
    device: str = "auto"                            # auto | cpu | cuda | cuda:N  (auto: CUDA when present)
    # fp32 | bf16 | fp16 (CUDA only, with a grad scaler) | auto (bf16 on a CUDA GPU that has it, else fp32)
    precision: str = opt("fp32", choices=("fp32", "bf16", "fp16", "auto"))
    channels_last: Any = opt("auto", choices=SWITCH)   # auto: CUDA and a model with 2-D convolutions (NHWC conv weights)
    tf32: Any = opt("auto", choices=SWITCH)            # auto: CUDA unless deterministic; TF32 matmuls + cudnn.benchmark
    # torchrun: DistributedDataParallel's find_unused_parameters; auto: on when a probe step leaves a parameter without gradient
    find_unused_parameters: Any = opt("auto", choices=SWITCH)
    # torchrun: BatchNorm → SyncBatchNorm (global-batch statistics); auto: on for CUDA runs of models with BatchNorm
    sync_bn: Any = opt("auto", choices=SWITCH)
    # CPU: flush denormal floats to zero (near-linear homotopy nets make Adam moments denormal, ~10x slower)
    flush_denormal: bool = False
    compile: bool = False                           # torch.compile the model
    grad_clip: float = opt(0.0, ge=0)               # max global grad norm; 0 disables
    threads: Any = "auto"                           # torch CPU threads: N | null (torch's default) | auto (1 for < 1M params on CPU)
    deterministic: bool = False                     # torch.use_deterministic_algorithms
    # <run dir>: continue from <dir>/checkpoints/last.pt | auto: this run dir's checkpoint, if any | false, null
    # or "": start fresh (false is kept a bool: Any, not str, so Hydra's `false` does not become "False")
    resume: Any = None
    overwrite: bool = False                         # true: clear a run dir that already holds a run and start over
    checkpoint_every: int = opt(0, ge=0, integer=True)            # steps between checkpoints (0: no step interval)
    # seconds between checkpoints, at least 100× the last save's duration (≤ 1 % of the time); 0: off. Always one at the end
    checkpoint_every_s: float = opt(60.0, ge=0)
    progress: bool = True                           # rich progress bar on a terminal (plain log lines otherwise)
    print_every: int = opt(100, gt=0, integer=True)               # steps between plain progress lines when not on a terminal
    # curves.png at the end of the run; auto: not drawn (`contnet report <run dir>` draws it, and a sweep's curves)
    plot: Any = opt("auto", choices=SWITCH)
    # steps between host transfers of the per-step records (one record per step still; NaN/divergence noticed here)
    log_every: int = opt(50, gt=0, integer=True)
    # status diverged when train/loss > this × the run's first loss (NaN/Inf always); null: NaN/Inf only
    diverge_factor: Optional[float] = opt(1000.0, gt=1)

    def check(self) -> None:
        super().check()
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise self.error("device", "must be auto, cpu, cuda or cuda:N")
        t = self.threads
        if not (t is None or t == "auto" or (isinstance(t, int) and not isinstance(t, bool) and t > 0)):
            raise self.error("threads", "must be auto, null or an integer > 0")
        if not self.max_steps and not self.max_epochs:
            raise self.error("max_steps", "set trainer.max_steps or trainer.max_epochs to a positive integer")
        if self.resume is False or self.resume == "":
            self.resume = None                      # no resume
        if self.resume is True:
            raise self.error("resume", "names no run; continue with trainer.resume=auto (this run dir) or "
                                       "trainer.resume=<run dir>, or start fresh with trainer.resume=false")
        if not (self.resume is None or isinstance(self.resume, str)):
            raise self.error("resume", "must be a run directory, auto, false or null; quote a numeric "
                                       "directory name, e.g. trainer.resume='2024'")
        if self.overwrite and self.resume is not None:
            raise self.error("overwrite", f"contradicts trainer.resume={self.resume}; continue the run (resume) "
                                          "or start over (overwrite), not both")


def trainer_config(node) -> TrainerConfig:
    """A trainer node (DictConfig, dict, None or a TrainerConfig) as its checked typed config."""
    return typed(TrainerConfig, node)
