"""The one training loop for every objective (classify | reconstruct | generate).

The loop only talks to the Task interface (batches, loss, evaluate) and to the optimizer through
`optimizer.step(closure)`; continuation drivers move λ inside their `step`, the loop just logs it.

No host sync in the steady-state step: each step's loss and λ stay on the device (`PendingSteps`) and
reach the loggers in one transfer every `trainer.log_every` steps, and before an evaluation, a checkpoint,
a stop and the end (one collective per flush under DDP); metrics.jsonl still gets one record per step.
NaN/Inf and divergence (loss > trainer.diverge_factor × the run's first loss) are detected at the flush:
up to log_every − 1 steps later than the bad step; those extra steps are discarded (the run ends at the
first bad step, with no checkpoint).
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from contnet.continuation.state import find_lambda
from contnet.registry import ConfigError
from . import batchnorm, checkpoint, distributed
from .plots import plot_curves
from .progress import ProgressReporter
from .signals import StopOnSignal

log = logging.getLogger("contnet")
CUDNN_TF32_DEFAULT = torch.backends.cudnn.allow_tf32     # torch's own value, before any run changes it


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but no CUDA device is visible; use trainer.device=auto or cpu")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ConfigError(f"trainer.device='{name}' is unknown; choose auto, cpu or cuda[:N]")
    return torch.device(name)


def autocast_for(precision: str, device: torch.device):
    if precision == "auto":          # bf16 autocast where the GPU has it, fp32 elsewhere
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext, None
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        raise ConfigError(f"trainer.precision='{precision}' is unknown; choose fp32, bf16 or fp16")
    if dtype is torch.float16 and device.type != "cuda":
        raise ConfigError("trainer.precision=fp16 needs CUDA; use bf16 or fp32 on CPU")
    scaler = torch.amp.GradScaler("cuda") if dtype is torch.float16 else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


def device_settings(model, tcfg, device: torch.device) -> None:
    """Cheap CUDA wins.  trainer.channels_last (auto: CUDA and a model with 2-D convolutions) stores conv
    weights NHWC, the layout tensor cores want; trainer.tf32 (auto: CUDA unless trainer.deterministic)
    allows TF32 matmuls and lets cuDNN benchmark its convolution algorithms.  Deterministic CUDA runs get
    CUBLAS_WORKSPACE_CONFIG, without which cuBLAS is not deterministic."""
    cuda = device.type == "cuda"
    deterministic = bool(tcfg.get("deterministic", False))
    layout = tcfg.get("channels_last", "auto")
    has_conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    if layout is True or (layout == "auto" and cuda and has_conv):
        model.to(memory_format=torch.channels_last)
    # Every switch below is process-wide: set it both ways on every run (off = torch's default), so a job of
    # an in-process sweep never inherits an earlier job's setting.
    tf32 = tcfg.get("tf32", "auto")
    if cuda:
        on = tf32 is True or (tf32 == "auto" and not deterministic)
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = True if on else CUDNN_TF32_DEFAULT
        torch.backends.cudnn.benchmark = on and not deterministic
    if cuda and deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if device.type == "cpu":                 # x86: arithmetic on denormals is ~10x slower (bench_continuation)
        torch.set_flush_denormal(bool(tcfg.get("flush_denormal", False)))


def steps_per_epoch(task, tcfg, world_size: int = 1) -> int:
    """Optimizer steps per epoch; a data-parallel step consumes batch_size × world_size examples."""
    return max(1, task.num_train() // (int(tcfg.batch_size) * world_size))


def total_steps(tcfg, steps_per_epoch: int) -> int:
    if tcfg.get("max_steps"):
        return int(tcfg.max_steps)
    if not tcfg.get("max_epochs") or int(tcfg.max_epochs) <= 0:
        raise ConfigError("set trainer.max_steps or trainer.max_epochs to a positive number")
    return int(tcfg.max_epochs) * steps_per_epoch


def is_better(key: str, new: float, old: float | None) -> bool:
    if old is None:
        return True
    return new < old if key.endswith("loss") or key.endswith("perplexity") else new > old


class PendingSteps:
    """Per-step values kept on the device until the next flush: appending costs no device→host sync."""

    def __init__(self):
        self.steps, self.losses, self.lams, self.lrs, self.times = [], [], [], [], []

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: int, loss, lam, lr, t: float) -> None:
        if not isinstance(loss, torch.Tensor):
            loss = torch.tensor(float("nan") if loss is None else float(loss))
        self.losses.append(loss.detach())     # one op per step; dtype and shape are fixed at the flush
        if lam is not None:                 # a copy: λ moves in place at the next λ-update
            self.lams.append(lam.detach().clone())
        self.steps.append(step)
        self.lrs.append(lr)
        self.times.append(t)

    def take(self):
        """(steps, values [n, 1] or [n, 2] (loss, λ) on the device, lrs, times); empties the buffer."""
        values = torch.stack([x if x.dim() == 0 else x.reshape(()) for x in self.losses]).float()
        if self.lams:
            values = torch.stack([values, torch.stack(self.lams).to(values)], dim=1)
        out = (self.steps, values.reshape(len(self.steps), -1), self.lrs, self.times)
        self.__init__()
        return out


@dataclass
class RunState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    elapsed_s: float = 0.0            # wall time of earlier (resumed) segments
    train_time_s: float = 0.0         # training-loop time without evaluations/checkpoints (benchmarks)
    best: dict = field(default_factory=dict)
    last: dict = field(default_factory=dict)
    first_loss: float | None = None   # the run's first train/loss: the divergence guard is relative to it


class _Stop(Exception):
    pass


def fit(*, model, task, optimizer, scheduler, tcfg, run_dir: Path, loggers: list, seed: int,
        resume_from: dict | Path | None = None, ctx: distributed.Context | None = None) -> dict:
    """Train; returns the summary fields the engine owns (status, steps, final, best, timings).

    With a data-parallel `ctx` every rank runs this loop on its shard of each global batch; only rank 0
    has loggers and writes checkpoints."""
    ctx = ctx or distributed.context()
    device = pick_device(distributed.device_for(str(tcfg.device), ctx))
    model.to(device)
    device_settings(model, tcfg, device)
    autocast, scaler = autocast_for(str(tcfg.precision), device)
    compile_ = torch.compile if tcfg.get("compile", False) else (lambda m: m)
    fwd_model = compile_(model)                                   # evaluation: the plain model on every rank
    bs = int(tcfg.batch_size)
    if bs <= 0:
        raise ConfigError(f"trainer.batch_size={bs}: must be an integer > 0")
    global_bs = bs * ctx.world_size
    train_model = fwd_model
    if ctx.enabled:
        distributed.sync_batchnorm(tcfg.get("sync_bn", "auto"), model, ctx, device)

        def probe_loss():            # the first global batch's shard (a fixed generator; RNG put back)
            probe = next(iter(task.train_batches(global_bs, torch.Generator().manual_seed(seed), device)))
            return task.loss(model, distributed.shard(probe, ctx))
        unused = distributed.find_unused(tcfg.get("find_unused_parameters", "auto"), model, probe_loss, ctx)
        train_model = compile_(distributed.wrap_model(model, ctx, device, find_unused_parameters=unused))
    n_steps = total_steps(tcfg, steps_per_epoch(task, tcfg, ctx.world_size))
    eval_every = int(tcfg.eval_every) if tcfg.get("eval_every") else 0
    ckpt_every = int(tcfg.get("checkpoint_every") or 0)
    ckpt_every_s = float(tcfg.get("checkpoint_every_s") or 0)    # wall-clock interval (default policy)
    next_ckpt_t = time.perf_counter() + ckpt_every_s
    grad_clip = float(tcfg.get("grad_clip") or 0.0)
    ckpt_path = Path(run_dir) / "checkpoints" / "last.pt"
    st = RunState()
    if resume_from is not None:
        prog = checkpoint.load(resume_from, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                               ctx=ctx, device=device)
        st = RunState(**{k: prog[k] for k in ("step", "epoch", "batch_in_epoch", "elapsed_s", "train_time_s", "best", "last")},
                      first_loss=prog.get("first_loss"))
        log.info("resumed in %s at step %d", run_dir, st.step)
    t0 = time.perf_counter() - st.elapsed_s
    status = "completed"
    log_every = int(tcfg.get("log_every") or 1)
    diverge_factor = float(tcfg.get("diverge_factor") or 0.0)
    pending = PendingSteps()
    bn_batches = int(tcfg.get("bn_recalibrate") or 0) if batchnorm.batchnorms(model) else 0

    def emit(record: dict, t: float | None = None) -> None:
        record["time_s"] = round((time.perf_counter() if t is None else t) - t0, 4)
        st.last.update(record)
        for lg in loggers:
            lg.log(record)

    def diverged(v: float) -> bool:
        if not math.isfinite(v):
            return True
        return bool(diverge_factor) and st.first_loss is not None and st.first_loss > 0 and \
            v > diverge_factor * st.first_loss

    def flush(stop: bool = False) -> bool:
        """Pending steps → loggers: one device→host transfer (one collective under DDP, where `stop` and
        "a timed checkpoint is due" are or-ed over ranks, so that every rank saves at the same step);
        raises _Stop on a non-finite or diverged loss.  Returns the stop decision."""
        nonlocal status, timed_ckpt
        if not pending:
            return stop
        steps, values, lrs, times = pending.take()
        due = bool(ckpt_every_s) and time.perf_counter() >= next_ckpt_t
        values, stop, timed_ckpt = distributed.reduce_values(values, stop, ctx, due)
        for step, vals, lr, t in zip(steps, values, lrs, times):
            loss = vals[0]
            if st.first_loss is None and math.isfinite(loss):
                st.first_loss = loss
            rec = {"step": step, "train/loss": loss, "lr": float(lr)}
            if len(vals) > 1:
                rec["lambda"] = vals[1]
            emit(rec, t)
            reporter.update(step, rec)
            if diverged(loss):
                st.step = step                 # the steps after the first bad one are discarded
                status = "diverged"
                why = "is" if not math.isfinite(loss) else f"exceeds {diverge_factor:g} × the first loss {st.first_loss:.4g}:"
                log.error("train/loss %s %s at step %d: stopping (status diverged; no checkpoint; "
                          "trainer.diverge_factor sets the threshold)", why, loss, step)
                raise _Stop
        return stop

    def evaluate(final: bool = False) -> dict:
        nonlocal paused
        t_eval = time.perf_counter()
        if bn_batches:                # re-estimate BatchNorm statistics under the current weights; every rank
            gen = torch.Generator().manual_seed(seed * 1_000_003 - 1)     # (SyncBatchNorm: a collective)
            with autocast():
                batchnorm.recalibrate(model, itertools.islice(task.train_batches(bs, gen, device), bn_batches),
                                      lambda b: task.loss(fwd_model, b))
        if not ctx.is_main:      # rank 0 evaluates, decodes and writes; the evaluation has no collective
            paused += time.perf_counter() - t_eval
            return {}
        model.eval()
        rec = {"step": st.step}
        splits = ["val", "test"] if final else ["val"]
        if tcfg.get("eval_train", True) and "train" in task.splits():
            splits.insert(0, "train")
        # inference_mode (lighter than no_grad: no version counters, no autograd metadata) unless the task
        # opts out with `eval_inference_mode = False`; BatchNorm recalibration above runs outside it
        with autocast(), torch.inference_mode(getattr(task, "eval_inference_mode", True)):
            for split in splits:
                if split not in task.splits():
                    continue
                for k, v in task.evaluate(fwd_model, split, bs, device, final=final).items():
                    key = f"train/full_{k}" if split == "train" and k == "loss" else f"{split}/{k}"
                    rec[key] = float(v)
                    if split == "val" and is_better(key, float(v), st.best.get(key)):
                        st.best[key] = float(v)
        model.train()
        emit(rec)
        paused += time.perf_counter() - t_eval
        return rec

    def save_checkpoint() -> None:
        nonlocal paused, next_ckpt_t, timed_ckpt
        timed_ckpt = False
        rng_ranks = checkpoint.gather_rng(ctx, device)     # under DDP a collective: every rank calls this
        if not ctx.is_main:
            return
        t_ckpt = time.perf_counter()
        for lg in loggers:      # metrics up to this step are on disk before the checkpoint says so
            if hasattr(lg, "flush"):
                lg.flush()
        checkpoint.save(ckpt_path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                        rng_ranks=rng_ranks, progress={
            "step": st.step, "epoch": st.epoch, "batch_in_epoch": st.batch_in_epoch,
            "elapsed_s": time.perf_counter() - t0, "train_time_s": st.train_time_s,
            "best": st.best, "last": st.last, "first_loss": st.first_loss})
        now = time.perf_counter()
        paused += now - t_ckpt
        # the next timed save waits at least 100× this one: saving stays ≤ 1 % of the run's time
        next_ckpt_t = now + max(ckpt_every_s, 100 * (now - t_ckpt))

    lam_state = find_lambda(model)            # looked up once: the hot loop only reads it
    reporter = ProgressReporter(n_steps, bool(tcfg.get("progress", True)), int(tcfg.get("print_every", 100)), st.step)
    model.train()
    paused = 0.0
    timed_ckpt = False
    # SIGINT/SIGTERM: finish the current step, save a checkpoint, mark the run interrupted
    signals = StopOnSignal().__enter__()
    try:
        if st.step == 0 and eval_every:
            evaluate()
        t_loop, paused = time.perf_counter(), 0.0
        while st.step < n_steps:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + st.epoch)   # data order = f(seed, epoch)
            for i, batch in enumerate(task.train_batches(global_bs, gen, device)):
                if i < st.batch_in_epoch:
                    continue                         # resume mid-epoch: skip what was already seen
                if ctx.enabled:
                    batch = distributed.shard(batch, ctx)

                def closure():
                    optimizer.zero_grad(set_to_none=True)
                    with autocast():
                        loss = task.loss(train_model, batch)
                    (scaler.scale(loss) if scaler else loss).backward()
                    if grad_clip > 0:
                        if scaler:
                            scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                    return loss
                if scaler is not None:
                    loss = closure()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss = optimizer.step(closure)
                lr = optimizer.param_groups[0]["lr"]
                if scheduler is not None:
                    scheduler.step()
                st.step += 1
                st.batch_in_epoch = i + 1
                pending.add(st.step, loss, lam_state.value if lam_state is not None else None, lr,
                            time.perf_counter())
                # flush points are the same step on every rank (the DDP collective); a signal stops a
                # single process at once, a data-parallel run at its next flush
                stop = signals.requested and not ctx.enabled
                evaluating = bool(eval_every) and st.step % eval_every == 0 and st.step < n_steps
                ckpt_due = bool(ckpt_every) and st.step % ckpt_every == 0
                if stop or evaluating or ckpt_due or st.step % log_every == 0 or st.step >= n_steps:
                    stop = flush(signals.requested)
                if evaluating:
                    reporter.update(st.step, {**st.last, **evaluate()})
                if ckpt_due or (timed_ckpt and not pending):
                    save_checkpoint()
                if stop:
                    status = "interrupted"
                    log.warning("signal %s: saving a checkpoint at step %d (continue with trainer.resume=%s)",
                                signals.signum or "on another rank", st.step, run_dir)
                    raise _Stop
                if st.step >= n_steps:
                    break
            else:
                st.epoch += 1
                st.batch_in_epoch = 0
    except _Stop:
        pass
    except BaseException:
        if not ctx.enabled:                  # a crash: keep the steps that ran (no collective on one rank)
            with contextlib.suppress(BaseException):
                flush()
        raise
    finally:
        if "t_loop" in locals():
            st.train_time_s += time.perf_counter() - t_loop - paused
        reporter.close()
        signals.__exit__(None, None, None)
    if status == "completed":
        evaluate(final=True)
    if status != "diverged":
        save_checkpoint()
    for lg in loggers:
        if hasattr(lg, "flush"):
            lg.flush()
    if ctx.is_main:
        with contextlib.suppress(Exception):
            plot_curves(Path(run_dir) / "metrics.jsonl", Path(run_dir) / "curves.png")
    wall = time.perf_counter() - t0
    extra = {"diverged_at_step": st.step} if status == "diverged" else {}
    if status == "interrupted":
        extra["signal"] = signals.signum
    return {**extra, "status": status, "steps": st.step, "wall_time_s": round(wall, 3),
            "train_time_s": round(st.train_time_s, 4),
            "steps_per_s": round(st.step / st.train_time_s, 2) if st.train_time_s else None,
            "final": {k: v for k, v in st.last.items() if k not in ("step", "time_s")}, "best": dict(st.best),
            "device": str(device), "world_size": ctx.world_size}
