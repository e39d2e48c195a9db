"""The one training loop for every objective (classify | reconstruct | generate), top to bottom:

    fit → training_models → run_epochs → train_step (optimizer.step(closure))
                                       → end_of_step → flush / evaluate / save_checkpoint

The loop only talks to the Task interface (batches, loss, evaluate) and to the optimizer through
`optimizer.step(closure)`, in every precision; continuation drivers move λ inside their `step`, the loop
just logs it.  Its state is one `Loop` object that every function takes explicitly.

No host sync in the steady-state step: each step's loss and λ stay on the device (`PendingSteps`) and
reach the loggers in one transfer every `trainer.log_every` steps, and before an evaluation, a checkpoint,
a stop and the end (one collective per flush under DDP); metrics.jsonl still gets one record per step.
NaN/Inf and divergence (loss > trainer.diverge_factor × the run's first loss) are detected at the flush:
up to log_every − 1 steps later than the bad step; those extra steps are discarded (the run ends at the
first bad step, with no checkpoint).  fp16 is the exception: its step-skip rule reads one flag per step.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from contnet.continuation.state import find_lambda
from . import batchnorm, checkpoint, distributed, startup
from .config import TrainerConfig
from .plots import plot_curves
from .progress import ProgressReporter
from .rng import gather_rng
from .setup import Setup
from .signals import Interrupted, StopOnSignal

log = logging.getLogger("contnet")


def seed64(x: int) -> int:
    """A derived seed as torch.Generator takes it (−2**63 ≤ x < 2**64): unchanged where it already fits, so only
    seeds that overflowed before (≳ 1.8e13) are folded."""
    return x if -2**63 <= x < 2**64 else x % 2**64


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
    final_step: int = -1              # the step whose final evaluation is done (a resume does not repeat it)

    @classmethod
    def of_checkpoint(cls, progress: dict) -> "RunState":
        return cls(**{k: progress[k] for k in ("step", "epoch", "batch_in_epoch", "elapsed_s", "train_time_s", "best",
                                               "last")}, first_loss=progress.get("first_loss"),
                   final_step=progress.get("final_step", -1))


class Stop(Exception):
    """Ends the loop early; `Loop.status` says why (diverged, interrupted)."""


@dataclass
class Loop:
    """One training loop: its objects and its mutable state (the functions below take it explicitly)."""
    cfg: TrainerConfig
    setup: Setup
    model: torch.nn.Module
    train_model: torch.nn.Module          # what the training step calls (compiled and/or DDP-wrapped)
    eval_model: torch.nn.Module           # what evaluation calls: never DDP-wrapped
    task: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    loggers: list
    run_dir: Path
    seed: int
    state: RunState = field(default_factory=RunState)
    pending: PendingSteps = field(default_factory=PendingSteps)
    lam: object = None                    # the model's LambdaState (looked up once), or None
    reporter: object = None
    bn_batches: int = 0                   # BatchNorm recalibration batches before each evaluation
    status: str = "completed"
    t0: float = 0.0                       # perf_counter at the run's start (earlier segments included)
    paused: float = 0.0                   # time spent evaluating/checkpointing since the loop started
    timed_ckpt: bool = False              # the checkpoint clock ran out (agreed over ranks at a flush)
    next_ckpt_t: float = 0.0
    saved_step: int = -1                  # the step of the last checkpoint this loop saved
    identity: dict | None = None          # the keys that make this run (rundir.run_identity), kept in checkpoints
    on_eval: object = None                # fit()'s on_eval: callback(val record) -> True stops the run as "pruned"


def training_models(model, task, cfg: TrainerConfig, setup: Setup, seed: int):
    """(train_model, eval_model): torch.compile'd when asked; under DDP the training one is wrapped, after
    SyncBatchNorm (trainer.sync_bn) and the unused-parameter probe (trainer.find_unused_parameters)."""
    compile_ = torch.compile if cfg.compile else (lambda m: m)
    eval_model = compile_(model)
    ctx, device = setup.ctx, setup.device
    if not ctx.enabled:
        return eval_model, eval_model
    distributed.sync_batchnorm(cfg.sync_bn, model, ctx, device)

    def probe_loss():            # the first global batch's shard (a fixed generator; RNG put back)
        gen = torch.Generator().manual_seed(seed)
        probe = task.train_batches(cfg.batch_size * ctx.world_size, gen, device, shard=distributed.shard_of(ctx))
        return task.loss(model, next(iter(probe)))
    unused = distributed.find_unused(cfg.find_unused_parameters, model, probe_loss, ctx)
    return compile_(distributed.wrap_model(model, ctx, device, find_unused_parameters=unused)), eval_model


def train_step(lp: Loop, batch) -> torch.Tensor:
    """One optimizer step: `optimizer.step(closure)`; the closure does zero_grad, forward, loss, backward
    and grad clipping, and returns the loss (a continuation optimizer may read λ's gradient after it)."""
    cfg, optimizer, precision = lp.cfg, lp.optimizer, lp.setup.precision

    def closure():
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            loss = lp.task.loss(lp.train_model, batch)
        if precision.scaler is not None:
            scaled_backward(lp, loss)
        else:
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(lp.model.parameters(), cfg.grad_clip)
        return loss
    loss = optimizer.step(closure)
    if precision.scaler is not None:
        precision.scaler.update()
    return loss


def scaled_backward(lp: Loop, loss: torch.Tensor) -> None:
    """fp16 inside the closure: backward of the scaled loss, the gradients unscaled (the optimizer's by
    GradScaler.unscale_, λ's here: it is no optimizer parameter), clipped, and all dropped when one is not
    finite, so that the optimizer's step leaves the parameters as they are (GradScaler.step's skip rule;
    one flag read per step, as GradScaler.step reads it).  The closure may run once per step."""
    scaler, optimizer = lp.setup.precision.scaler, lp.optimizer
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    flags = list(scaler._per_optimizer_states[id(optimizer)]["found_inf_per_device"].values())
    lam_grad = lp.lam.value.grad if lp.lam is not None else None
    if lam_grad is not None:
        lam_grad.div_(scaler.scale(torch.ones((), device=lam_grad.device)))
        flags.append((~torch.isfinite(lam_grad)).any())
    if lp.cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(lp.model.parameters(), lp.cfg.grad_clip)
    if any(bool(f) for f in flags):
        optimizer.zero_grad(set_to_none=True)      # λ's gradient too (a continuation optimizer's zero_grad)
        if lp.lam is not None:
            lp.lam.value.grad = None


def emit(lp: Loop, record: dict, t: float | None = None) -> None:
    record["time_s"] = round((time.perf_counter() if t is None else t) - lp.t0, 4)
    lp.state.last.update(record)
    for lg in lp.loggers:
        lg.log(record)


def diverged(lp: Loop, v: float) -> bool:
    if not math.isfinite(v):
        return True
    factor, first = lp.cfg.diverge_factor or 0.0, lp.state.first_loss
    return bool(factor) and first is not None and first > 0 and v > factor * first


def flush(lp: Loop, stop: bool = False) -> bool:
    """Pending steps → loggers: one device→host transfer (one collective under DDP, where `stop` and
    "a timed checkpoint is due" are or-ed over ranks, so that every rank saves at the same step);
    raises Stop on a non-finite or diverged loss.  Returns the stop decision."""
    if not lp.pending:
        return stop
    st = lp.state
    steps, values, lrs, times = lp.pending.take()
    due = bool(lp.cfg.checkpoint_every_s) and time.perf_counter() >= lp.next_ckpt_t
    values, stop, lp.timed_ckpt = distributed.reduce_values(values, stop, lp.setup.ctx, due)
    for step, vals, lr, t in zip(steps, values, lrs, times):
        loss = vals[0]
        if st.first_loss is None and math.isfinite(loss):
            st.first_loss = loss
        rec = {"step": step, "train/loss": loss, "lr": float(lr)}
        if len(vals) > 1:
            rec["lambda"] = vals[1]
        emit(lp, rec, t)
        lp.reporter.update(step, rec)
        if diverged(lp, loss):
            st.step = step                 # the steps after the first bad one are discarded
            lp.status = "diverged"
            why = "is" if not math.isfinite(loss) else \
                f"exceeds {lp.cfg.diverge_factor:g} × the first loss {st.first_loss:.4g}:"
            log.error("train/loss %s %s at step %d: stopping (status diverged; no checkpoint; "
                      "trainer.diverge_factor sets the threshold)", why, loss, step)
            raise Stop
    return stop


def evaluate(lp: Loop, final: bool = False) -> dict:
    """val (and train/full_loss; test at the end) on rank 0, after BatchNorm recalibration on every rank."""
    t_eval = time.perf_counter()
    cfg, task, device, st = lp.cfg, lp.task, lp.setup.device, lp.state
    autocast = lp.setup.precision.autocast
    if lp.bn_batches:             # re-estimate BatchNorm statistics under the current weights; every rank
        gen = torch.Generator().manual_seed(seed64(lp.seed * 1_000_003 - 1))     # (SyncBatchNorm: a collective)
        with autocast():
            batchnorm.recalibrate(lp.model, itertools.islice(task.train_batches(cfg.batch_size, gen, device), lp.bn_batches),
                                  lambda b: task.loss(lp.eval_model, b))
    if not lp.setup.ctx.is_main:      # rank 0 evaluates, decodes and writes; the evaluation has no collective
        lp.paused += time.perf_counter() - t_eval
        return {}
    lp.model.eval()
    rec = {"step": st.step}
    splits = ["val", "test"] if final else ["val"]
    if cfg.eval_train and "train" in task.splits():
        splits.insert(0, "train")
    # inference_mode (lighter than no_grad: no version counters, no autograd metadata) unless the task
    # opts out with `eval_inference_mode = False`; BatchNorm recalibration above runs outside it
    with autocast(), torch.inference_mode(getattr(task, "eval_inference_mode", True)):
        for split in splits:
            if split not in task.splits():
                continue
            for k, v in task.evaluate(lp.eval_model, split, cfg.batch_size, device, final=final).items():
                key = f"train/full_{k}" if split == "train" and k == "loss" else f"{split}/{k}"
                rec[key] = float(v)
                if split == "val" and is_better(key, float(v), st.best.get(key)):
                    st.best[key] = float(v)
    lp.model.train()
    emit(lp, rec)
    lp.paused += time.perf_counter() - t_eval
    return rec


def save_checkpoint(lp: Loop) -> None:
    """checkpoints/last.pt (rank 0), after the metrics up to this step are on disk."""
    lp.timed_ckpt = False
    ctx, device, st = lp.setup.ctx, lp.setup.device, lp.state
    rng_ranks = gather_rng(ctx, device)     # under DDP a collective: every rank calls this
    if not ctx.is_main:
        lp.saved_step = st.step                        # every rank: the next save decision is the same on all
        return
    t_ckpt = time.perf_counter()
    flush_loggers(lp)
    checkpoint.save(lp.run_dir / "checkpoints" / "last.pt", model=lp.model, optimizer=lp.optimizer,
                    scheduler=lp.scheduler, scaler=lp.setup.precision.scaler, rng_ranks=rng_ranks, progress={
                        "step": st.step, "epoch": st.epoch, "batch_in_epoch": st.batch_in_epoch,
                        "elapsed_s": time.perf_counter() - lp.t0, "train_time_s": st.train_time_s,
                        "best": st.best, "last": st.last, "first_loss": st.first_loss,
                        "final_step": st.final_step}, run=lp.identity)
    lp.saved_step = st.step
    now = time.perf_counter()
    lp.paused += now - t_ckpt
    # the next timed save waits at least 100× this one: saving stays ≤ 1 % of the run's time
    lp.next_ckpt_t = now + max(lp.cfg.checkpoint_every_s, 100 * (now - t_ckpt))


def end_of_step(lp: Loop, signals: StopOnSignal) -> None:
    """Flush, evaluate, checkpoint or stop as this step requires.  Flush points are the same step on every
    rank (the DDP collective); a signal stops a single process at once, a data-parallel run at its next flush."""
    cfg, st, n_steps = lp.cfg, lp.state, lp.setup.steps
    stop = signals.requested and not lp.setup.ctx.enabled
    evaluating = bool(cfg.eval_every) and st.step % cfg.eval_every == 0 and st.step < n_steps
    ckpt_due = bool(cfg.checkpoint_every) and st.step % cfg.checkpoint_every == 0
    if stop or evaluating or ckpt_due or st.step % cfg.log_every == 0 or st.step >= n_steps:
        stop = flush(lp, signals.requested)
    pruned = False
    if evaluating:
        rec = evaluate(lp)
        lp.reporter.update(st.step, {**st.last, **rec})
        pruned = bool(rec) and lp.on_eval is not None and bool(lp.on_eval(rec))
    if ckpt_due or (lp.timed_ckpt and not lp.pending):
        save_checkpoint(lp)
    if pruned:                             # finish() saves the checkpoint, as after a stop
        lp.status = "pruned"
        log.info("pruned at step %d (asked by the evaluation callback)", st.step)
        raise Stop
    if stop:
        signals.acted = True
        lp.status = "interrupted"
        log.warning("signal %s: saving a checkpoint at step %d (continue with trainer.resume=%s)",
                    signals.signum or "on another rank", st.step, lp.run_dir)
        raise Stop


def run_epochs(lp: Loop, signals: StopOnSignal) -> None:
    """Steps until the budget: data order = f(seed, epoch); a resume mid-epoch skips the batches seen."""
    st, ctx, n_steps = lp.state, lp.setup.ctx, lp.setup.steps
    while st.step < n_steps:
        gen = torch.Generator().manual_seed(seed64(lp.seed * 1_000_003 + st.epoch))
        batches = lp.task.train_batches(lp.cfg.batch_size * ctx.world_size, gen, lp.setup.device,
                                        shard=distributed.shard_of(ctx))     # this rank's slice of each global batch
        for i, batch in enumerate(batches):
            if i < st.batch_in_epoch:
                continue
            loss = train_step(lp, batch)
            lr = lp.optimizer.param_groups[0]["lr"]
            if lp.scheduler is not None:
                lp.scheduler.step()
            st.step += 1
            st.batch_in_epoch = i + 1
            lp.pending.add(st.step, loss, lp.lam.value if lp.lam is not None else None, lr, time.perf_counter())
            end_of_step(lp, signals)
            if st.step >= n_steps:
                return
        st.epoch += 1
        st.batch_in_epoch = 0


def plot(lp: Loop) -> None:
    """curves.png when trainer.plot=true; auto (the default) leaves it to `contnet report <run dir>`: matplotlib's
    import and first drawing were 0.8 CPU s of the default `contnet train` (bench/bench_startup.py)."""
    if lp.cfg.plot is not True or not (lp.run_dir / "metrics.jsonl").exists():   # a library call without a JsonlLogger
        return
    try:
        plot_curves(lp.run_dir / "metrics.jsonl", lp.run_dir / "curves.png")
    except Exception as e:          # noqa: BLE001 - a plot never fails a run, but says why it is missing
        log.warning("curves.png not written (%s: %s); metrics.jsonl has every record",
                    e.__class__.__name__, " ".join(str(e).split())[:200])


def fit(*, model, task, optimizer, scheduler, tcfg: TrainerConfig, setup: Setup, run_dir: Path, loggers: list,
        seed: int, state: RunState | None = None, signals: StopOnSignal | None = None, identity: dict | None = None,
        into: dict | None = None, on_eval=None) -> dict:
    """Train, evaluate at the end, save the last checkpoint and the plot; returns the summary fields the engine
    owns (status, steps, final, best, timings), and keeps them in `into` as well when it ends by an exception.

    `setup` is what `run()` decided (device, precision, step budget; the model is placed); `state` the progress
    of a restored checkpoint (everything else of it is restored already), None for a fresh start.  `signals` is
    the run's signal scope (engine/signals.py; a library call gets its own).  With a data-parallel context every
    rank runs this loop on its shard of each global batch; only rank 0 has loggers and writes checkpoints.
    `on_eval(record)`: called with each evaluation's record during training (a tuner reports it to its pruner);
    True ends the run there, status "pruned" (single-process runs: under DDP only rank 0 evaluates)."""
    startup.started()                    # the collector back to its pace (a command's start-up ends here)
    cfg = tcfg
    lp = Loop(cfg, setup, model, *training_models(model, task, cfg, setup, seed), task=task, optimizer=optimizer,
              scheduler=scheduler, loggers=loggers, run_dir=Path(run_dir), seed=seed, identity=identity,
              on_eval=on_eval)
    lp.next_ckpt_t = time.perf_counter() + cfg.checkpoint_every_s
    if state is not None:
        lp.state, lp.saved_step = state, state.step
        log.info("resumed in %s at step %d", run_dir, state.step)
    lp.t0 = time.perf_counter() - lp.state.elapsed_s
    lp.bn_batches = cfg.bn_recalibrate if batchnorm.batchnorms(model) else 0
    lp.lam = find_lambda(model)
    lp.reporter = ProgressReporter(setup.steps, cfg.progress, cfg.print_every, lp.state.step)
    model.train()
    with contextlib.ExitStack() as stack:
        if signals is None:
            signals = stack.enter_context(StopOnSignal())
        try:
            train(lp, signals)
            # a data-parallel run finishes its outputs on a signal (rank 0 alone evaluates: no agreed stop there)
            with signals.deferred() if setup.ctx.enabled else contextlib.nullcontext():
                finish(lp)
        except Interrupted as e:
            stop_now(lp, signals, e)
        finally:
            if into is not None:
                into.update(outcome(lp, signals))
    return outcome(lp, signals)


def train(lp: Loop, signals: StopOnSignal) -> None:
    """The training loop: a first signal ends it after the current step (Stop, status interrupted)."""
    st, t_loop = lp.state, None
    with signals.deferred():
        try:
            if st.step == 0 and lp.cfg.eval_every:
                evaluate(lp)
            t_loop, lp.paused = time.perf_counter(), 0.0
            run_epochs(lp, signals)
        except Stop:
            pass
        except BaseException:
            if not lp.setup.ctx.enabled:          # a crash: keep the steps that ran (no collective on one rank)
                with signals.shielded(), contextlib.suppress(Exception):
                    flush(lp)
                    flush_loggers(lp)
            raise
        finally:
            if t_loop is not None:
                st.train_time_s += time.perf_counter() - t_loop - lp.paused
            lp.reporter.close()


def finish(lp: Loop) -> None:
    """After the loop: the final evaluation (once per step: a resume after it does not repeat it), the last
    checkpoint, the records on disk and the plot.  A signal here raises Interrupted at once (see fit)."""
    st = lp.state
    if lp.status == "completed" and st.final_step != st.step:
        evaluate(lp, final=True)
        st.final_step = st.step
    if lp.status == "completed" or (lp.status != "diverged" and lp.saved_step != st.step):
        save_checkpoint(lp)
    flush_loggers(lp)
    if lp.setup.ctx.is_main and lp.status != "interrupted":
        plot(lp)


def stop_now(lp: Loop, signals: StopOnSignal, e: Interrupted) -> None:
    """A signal outside the training steps (or a second one): the records on disk, then — after a first
    signal, past the first step — a checkpoint at this step unless one is there already."""
    lp.status = "interrupted"
    st = lp.state
    with signals.shielded():
        try:
            if not lp.setup.ctx.enabled:
                flush(lp)
        except Stop:                              # the pending steps diverged: that is the status
            return
        finally:
            flush_loggers(lp)
    if e.second or st.step == 0 or lp.saved_step == st.step:
        if e.second:
            log.warning("second signal: stopping now; %s", on_disk(lp))
        return
    try:
        save_checkpoint(lp)
        log.warning("signal %s: checkpoint saved at step %d (continue with trainer.resume=%s)", e.signum, st.step,
                    lp.run_dir)
    except Interrupted:
        log.warning("second signal: the checkpoint at step %d was not saved; %s", st.step, on_disk(lp))


def on_disk(lp: Loop) -> str:
    if lp.saved_step >= 0:
        return f"the checkpoint on disk (step {lp.saved_step}) stands"
    return "no checkpoint was saved (trainer.resume=auto starts the run over)"


def flush_loggers(lp: Loop) -> None:
    for lg in lp.loggers:
        if hasattr(lg, "flush"):
            lg.flush()


def outcome(lp: Loop, signals: StopOnSignal) -> dict:
    """The summary fields the loop owns, true at any moment (the step count included)."""
    st = lp.state
    extra = {"diverged_at_step": st.step} if lp.status == "diverged" else {}
    if lp.status == "interrupted":
        extra["signal"] = signals.signum
    return {**extra, "status": lp.status, "steps": st.step, "wall_time_s": round(time.perf_counter() - lp.t0, 3),
            "train_time_s": round(st.train_time_s, 4),
            "steps_per_s": round(st.step / st.train_time_s, 2) if st.train_time_s else None,
            "final": {k: v for k, v in st.last.items() if k not in ("step", "time_s")}, "best": dict(st.best),
            "device": str(lp.setup.device), "world_size": lp.setup.ctx.world_size}
