"""PARC: pseudo-arclength continuation (continuation spec §2.6) as a training component.

State z = (θ, λ).  λ is an unknown: during PARC its buffer requires grad, the closure's backward
fills ∂L/∂λ, and λ moves with θ.  The path is walked in arclength steps Δs:

  predictor   textbook (default, A9): z_pred = z_k + Δs·ż with ż the unit secant (z_k − z_{k−1})/‖·‖;
              authors (C2): v = (Δs·Δθ/‖Δθ‖, (Δs/Δs_prev)·Δλ), z_pred = z_k + v.
  corrector   one *engine step* = one closure call = one corrector iteration: the inner optimizer
              updates θ with ∇θL, λ takes a gradient step of size `lambda_lr` on ∂L/∂λ, then
              textbook: z is projected onto the hyperplane N(z) = ⟨z − z_k, ż⟩ − Δs = 0 (exact
              equality constraint, reference z_k); authors: the gradient of the fixed-μ penalty
              μ·(⟨z − z_pred, v⟩ − Δs) is added instead (reference z_pred, no projection).
              A corrector ends after at most `corrector_steps` iterations; with `corrector_check=loss`
              (the default) earlier when the running mean of the loss stops moving (C2's ma_loss
              test, relative tolerance here, evaluated on the device); with `corrector_check=fixed` always
              after `corrector_steps`.
  Δs update   C2's corrector_omega rule from the iterations used j: ω = 1 + G/j if j ≤ G else
              max(G/j, 0.05); Δs ← clip(ω·Δs, min_arc_len, max_arc_len).
  start       C2's natural start: from (θ0, λ_init) one unconstrained corrector at λ_init +
              natural_step gives the second point of the first secant.

λ is clipped to [0, 1].  When a corrector ends with λ ≥ 1 − `finish_tol`, λ is set to exactly 1, the
buffers are freed, and the optimizer continues as its inner optimizer.

Host transfers: none in a step, with either corrector check.  θ, λ, ∂L/∂λ, the projection, the secant,
the early-stop test, the counters j and k, Δs and the λ ≥ 1 − tol finish test live on the device; the host
learns of corrector ends and of the finish through flags it never waits for (PARCDriver's docstring says
how the results stay the same when it learns late).  sphere_radius_m > 0 is the exception: it waits for
each step's corrector-end flag.

The inner product on z weights θ by κ² (`theta_scale`; "rms": κ = 1/√n, so θ is measured as an RMS
change and one unit of λ weighs as much as moving every weight by one unit).  With κ = 1 it is the
plain Euclidean arclength of the spec.  Ants (several perturbed correctors, best kept) are not run:
one engine step has one closure; `sphere_radius_m` > 0 perturbs the single prediction orthogonally.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Optional

import torch
import torch.distributed as dist

from contnet.schema import Options, opt

from .state import HostFlag, LambdaState

CONSTRAINTS = ("textbook", "authors")
PROGRESS_DELAY = 8        # steps between posting PARC's progress flags and reading them where the host lags (CUDA)
CORRECTOR_CHECKS = ("fixed", "loss")


@dataclass
class ArclengthOptions(Options):
    """The PARC keys of optimizer=parc.  Defaults are the CLI's: C2's AE values (delta_s 0.05 in [0.008, 0.02],
    correctors of up to 300 epochs) walk far more slowly than the default digits_ae budget (≈380 steps)
    allows, so the arclength values are scaled so that λ reaches 1 well inside it.  C2's values are the
    preset conf/optimizer/arclength/authors.yaml (`optimizer=parc optimizer/arclength=authors`)."""
    group = "optimizer"          # errors read `optimizer.<key>=...` also for a bare ArclengthOptions
    lambda_start_key = "lambda_init"   # the key of λ's start (contnet.validation: model.init=auto with a start at 1)
    # A9 best reading: ⟨z − z_k, ż⟩ = Δs enforced exactly (projection); authors = C2's fixed-μ penalty around z_pred
    constraint: str = opt("textbook", choices=CONSTRAINTS)
    lagrange_mu: float = opt(1e-3, ge=0)       # μ of the authors' penalty (C2 AE lagrange_init 0.001); unused by textbook
    # A3 best reading: the closed-form λ=0 (C2 AE starts at 0.00).  λ=1 is allowed, as for NPACS's l_init: there
    # is no path left to walk, so PARC is its inner optimizer from the first step (the same rule as λ reaching 1).
    lambda_init: float = opt(0.0, ge=0, le=1)
    natural_step: float = opt(0.03, ge=0, le=1)  # C2's natural start: one unconstrained corrector at lambda_init + 0.03
    delta_s: float = opt(0.1, gt=0)            # initial Δs (C2 AE: 0.05; scaled for the budget)
    min_arc_len: float = opt(0.05, gt=0)       # Δs floor (C2 AE: 0.008; scaled for the budget)
    max_arc_len: float = opt(0.2, gt=0)        # Δs cap (C2 AE: 0.02; scaled for the budget)
    # max corrector iterations (= engine steps) per continuation step (C2: up to descent_period epochs; NPACS: u_freq=10)
    corrector_steps: int = opt(10, ge=1, integer=True)
    # loss (default) = C2's early stop below, the reading behind every published PARC figure
    # (docs/results/reproduce-cpu-tuned.md), tested on the device from j = max(corrector_min_steps, ma_window + 1)
    # on.  fixed = every corrector runs corrector_steps iterations (j, and so the Δs rule, constant).  Neither
    # reads anything on the host inside a step (tests/test_host_sync.py).
    corrector_check: str = opt("loss", choices=CORRECTOR_CHECKS)
    corrector_min_steps: int = opt(5, ge=1, integer=True)    # iterations before the early-stop test may end a corrector (corrector_check=loss)
    loss_tol: float = opt(1e-3, ge=0)          # (loss) early stop: relative change of the running-mean loss (C2 ma_loss, absolute 2e-5)
    ma_window: int = opt(5, ge=1, integer=True)              # running-mean length (C2: 10; corrector_check=loss)
    guess_steps: int = opt(5, ge=1, integer=True)            # G of C2's corrector_omega rule (C2: guess_ant_steps 20, counted in epochs)
    lambda_lr: Optional[float] = opt(None, ge=0)  # step on ∂L/∂λ (C2: λ trained like θ); null = lr; 0 = λ moves by the constraint only
    # κ of the z inner product: rms = 1/sqrt(#params) (θ as an RMS change); a number > 0, e.g. 1.0 = plain Euclidean (spec)
    theta_scale: Any = "rms"
    sphere_radius_m: float = opt(0.0, ge=0)    # orthogonal perturbation of the prediction, radius m·Δs (C2: 0.5 with ants; 0 = none)
    finish_tol: float = opt(1e-6, ge=0, lt=1)  # λ ≥ 1 − tol ends continuation (λ set to exactly 1)
    max_continuation_steps: Optional[int] = opt(None, ge=1, integer=True)  # after this many continuation steps λ jumps to 1 (null: no limit)

    def check(self) -> None:
        super().check()
        if self.min_arc_len > self.max_arc_len:
            raise self.error("min_arc_len", f"must be <= optimizer.max_arc_len={self.max_arc_len}")
        ts = self.theta_scale
        if ts != "rms" and not (isinstance(ts, (int, float)) and not isinstance(ts, bool) and ts > 0):
            raise self.error("theta_scale", "must be rms or a number > 0")

    def arclength_dict(self) -> dict:
        """The PARC keys alone (what a checkpoint records)."""
        return {f.name: getattr(self, f.name) for f in fields(ArclengthOptions)}


def corrector_omega(j, guess: int) -> torch.Tensor:
    """Δs factor from the corrector iterations used (C2): fast convergence grows Δs, slow shrinks it.
    `j` a number or a float64 tensor on any device (no host read); the result is a float64 tensor there."""
    j = torch.as_tensor(j, dtype=torch.float64)
    return torch.where(j <= guess, 1.0 + guess / j, torch.clamp(guess / j, min=0.05))


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """Σ ⟨a_i, b_i⟩ as a 0-dim tensor on the tensors' device (no host read)."""
    return sum(torch.sum(x * y) for x, y in zip(a, b)) if a else torch.zeros(())


def orthogonal_direction(t_theta, t_lam, kappa: float, generator=None):
    """A random unit direction d (in the κ-weighted metric) with ⟨d, ż⟩ = 0 for the unit ż = (t_θ, t_λ).
    d_λ comes back as a 0-dim tensor on t_θ's device; nothing is read on the host."""
    d = [torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device) for t in t_theta]
    ref = t_theta[0]
    d_lam = torch.randn((), generator=generator, dtype=ref.dtype).to(ref.device)
    c = kappa ** 2 * _dot(d, t_theta) + d_lam * t_lam
    torch._foreach_sub_(d, torch._foreach_mul(t_theta, c))
    d_lam = d_lam - c * t_lam
    norm = torch.sqrt(kappa ** 2 * _dot(d, d) + d_lam ** 2)
    torch._foreach_div_(d, norm)
    return d, d_lam / norm


def _data_parallel() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _global_mean(g_lam: torch.Tensor, loss):
    """Under data parallelism: ∂L/∂λ (λ is a buffer, so DDP does not average its gradient) and the loss that the
    early-stop test reads, averaged over the ranks in one all_reduce (no host read), so that every rank takes
    the same λ step, projection and corrector ends — those of one process with the global batch."""
    parts = [g_lam.reshape(1)] + ([loss.detach().to(g_lam.dtype).reshape(1)] if loss is not None else [])
    both = torch.cat(parts)
    dist.all_reduce(both)
    both = both / dist.get_world_size()
    return both[0].reshape(g_lam.shape), (both[1].to(loss.dtype) if loss is not None else None)


def _select_(dst: list[torch.Tensor], src: list[torch.Tensor], take: torch.Tensor) -> None:
    """dst ← src where the 0-dim float `take` is 1, dst where it is 0 (exact for finite values; no host read)."""
    torch._foreach_mul_(dst, 1.0 - take)
    torch._foreach_add_(dst, torch._foreach_mul(src, take))


class PARCDriver:
    """The corrector-end decision, the Δs rule, the counters and the phase live on λ's device (float64 scalars,
    booleans), so that no engine step reads anything on the host.  Each step posts (corrector ended, PARC
    finished, arclength phase) to a `HostFlag`: where the host sees it at once (CPU), a step whose corrector
    did not end skips the end-of-corrector work, and a finish frees PARC's buffers right away; where it sees it
    later (CUDA), the end-of-corrector work runs at every step masked by the device flag (an exact no-op when
    it is 0), and the host finishes when it sees the flag, meanwhile λ = 1 and every PARC update is a no-op.
    Both give the same numbers.  `corrector_check=fixed`: the host knows every corrector end (j counts to
    corrector_steps), so nothing is masked.  `sphere_radius_m` > 0 draws its perturbation on the host at a
    corrector end, so it waits for the end flag at every step (one device sync per step on CUDA)."""

    def __init__(self, cfg: ArclengthOptions, lam: LambdaState, params: list[torch.Tensor], lr: float):
        self.cfg, self.lam, self.params = cfg, lam, params
        n = sum(p.numel() for p in params)
        self.kappa = 1.0 / math.sqrt(max(n, 1)) if cfg.theta_scale == "rms" else float(cfg.theta_scale)
        self.lambda_lr = lr if cfg.lambda_lr is None else float(cfg.lambda_lr)
        self.phase = "natural"            # the host's view: natural → arclength → done
        self.j_host = 0                   # corrector iterations as the host counts them (corrector_check=fixed)
        self.steps = 0                    # engine steps taken while active
        self.generator = torch.Generator().manual_seed(0)
        dev = lam.value.device
        f64 = dict(dtype=torch.float64, device=dev)
        self.ds_t, self.ds_prev_t = torch.tensor(cfg.delta_s, **f64), torch.tensor(cfg.delta_s, **f64)
        self.j_t, self.k_t = torch.zeros((), **f64), torch.zeros((), **f64)   # iterations of this corrector; correctors done
        self.arc = torch.zeros((), dtype=torch.bool, device=dev)             # arclength phase (after the natural corrector)
        self.running = torch.ones((), dtype=torch.bool, device=dev)          # False once λ is set to 1 on the device
        self.recent = torch.full((cfg.ma_window + 1,), float("nan"), **f64)  # the last ma_window + 1 losses
        self.ended = HostFlag(dev)              # this step's corrector ended (posted at every step of corrector_check=loss)
        self.progress = HostFlag(dev, size=2)   # (finished, arclength): sticky, posted again once the host has read it
        self.posted_at = 0                      # the step of the pending progress post
        with torch.no_grad():
            self.theta_ref = [p.detach().clone() for p in params]   # z_k (θ part)
            self.tangent = [torch.zeros_like(p) for p in params]    # textbook: unit ż θ part; authors: v_θ (0 before the first secant)
        self.lam_ref = self._scalar(cfg.lambda_init)               # z_k (λ part), on λ's device
        self.t_lam = self._scalar(0.0)
        lam.set(min(cfg.lambda_init + cfg.natural_step, 1.0))
        lam.value.requires_grad_(True)
        if cfg.lambda_init >= 1.0 - cfg.finish_tol:     # no path to walk: the inner optimizer from step one
            self._finish()

    def _scalar(self, x) -> torch.Tensor:
        v = self.lam.value
        return torch.as_tensor(x, dtype=v.dtype).to(v.device)

    # host views of the device state (each one read: for tests, logs and checkpoints, not for the step)
    ds = property(lambda self: float(self.ds_t))
    ds_prev = property(lambda self: float(self.ds_prev_t))
    j = property(lambda self: int(self.j_t))
    k = property(lambda self: int(self.k_t))

    @property
    def active(self) -> bool:
        return self.phase != "done"

    def zero_grad(self) -> None:
        self.lam.value.grad = None

    # ---- one engine step = one corrector iteration ------------------------------------------------
    def step(self, inner: torch.optim.Optimizer, closure=None):
        self.lam.value.grad = None
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        c = self.cfg
        with torch.no_grad():
            grad = self.lam.value.grad
            g_lam = torch.zeros_like(self.lam.tensor()) if grad is None else grad.detach()
            seen_loss = loss
            if _data_parallel():
                g_lam, seen_loss = _global_mean(g_lam, loss)
            if c.constraint == "authors":          # ∇(μ·N) = μ·v; v = 0 before the first secant and after the finish
                for p, v in zip(self.params, self.tangent):
                    if p.grad is not None:
                        p.grad.add_(v, alpha=c.lagrange_mu)
                g_lam = g_lam + c.lagrange_mu * self.t_lam
            inner.step()
            lam = self.lam.tensor()
            moved = lam - self.lambda_lr * g_lam
            moved = self._project(moved) if c.constraint == "textbook" else moved
            self.lam.set_tensor(torch.where(self.arc & self.running, moved, lam))   # clamp to [0, 1] on the device
            self.j_t += 1
            self.steps += 1
            self.j_host += 1
            if c.corrector_check == "fixed":
                if self.j_host >= c.corrector_steps:
                    self.j_host = 0
                    self._end_corrector(self.running.clone())
            else:
                self._loss_check_step(seen_loss)
            self._poll_progress()
        return loss

    def _poll_progress(self) -> None:
        """Post (finished, arclength) when no post is pending, and learn it: where the host sees it at once, now;
        where it lags (CUDA), PROGRESS_DELAY steps after the post, waiting if it must (by then the device is
        long done with that step): the same step on every rank of a data-parallel run, so that the ranks stop
        calling this driver — and its collective — together."""
        if not self.progress.pending:
            self.progress.post(torch.stack([~self.running, self.arc]))
            self.posted_at = self.steps
        if not self.progress.lags:
            self._learn(self.progress.read())
        elif self.steps - self.posted_at >= PROGRESS_DELAY:
            self._learn(self.progress.read(wait=True))

    @torch.no_grad()
    def _loss_check_step(self, loss) -> None:
        """C2's early stop on the device: the running mean of the last ma_window losses against the one a step
        before (sequential sums, as the host rule added them), from j = max(corrector_min_steps, ma_window + 1)."""
        c, w = self.cfg, self.cfg.ma_window
        value = loss.detach().to(self.recent) if loss is not None else self.recent.new_tensor(float("nan"))
        self.recent = torch.cat([self.recent[1:], value.reshape(1)])
        now = torch.cumsum(self.recent[1:], 0)[-1] / w
        before = torch.cumsum(self.recent[:-1], 0)[-1] / w
        still = (now - before).abs() <= c.loss_tol * torch.clamp(before.abs(), min=1e-12)
        j = self.j_t
        end = self.running & ((j >= c.corrector_steps) | ((j >= max(c.corrector_min_steps, w + 1)) & still))
        self.ended.post(end)
        seen = self.ended.read(wait=c.sphere_radius_m > 0)
        if seen is not False:               # None: the host does not know yet; masked (a no-op where end is False)
            self._end_corrector(end)

    @torch.no_grad()
    def residual(self, lam: torch.Tensor | None = None) -> torch.Tensor:
        """Textbook N(z) = ⟨z − z_k, ż⟩ − Δs (κ-weighted), a 0-dim tensor on λ's device."""
        lam = self.lam.tensor() if lam is None else lam
        diff = torch._foreach_sub(self.params, self.theta_ref)
        ds = self.ds_t.to(lam.dtype)
        return self.kappa ** 2 * _dot(diff, self.tangent) + (lam - self.lam_ref) * self.t_lam - ds

    @torch.no_grad()
    def _project(self, lam: torch.Tensor) -> torch.Tensor:
        """Onto ⟨z − z_k, ż⟩ = Δs (θ in place).  Before the first secant and after the finish ż = 0: no change."""
        n = self.residual(lam)
        torch._foreach_sub_(self.params, torch._foreach_mul(self.tangent, n))
        return lam - n * self.t_lam

    # ---- end of a corrector: Δs update, new secant, predictor ----------------------------------------
    @torch.no_grad()
    def _end_corrector(self, end: torch.Tensor) -> None:
        """Everything a corrector end does, as device operations selected by the 0-dim boolean `end`."""
        c = self.cfg
        lam = self.lam.tensor().clone()
        dtype = lam.dtype
        grow = end & self.arc                              # Δs adapts after arclength correctors only
        ds_new = torch.clamp(corrector_omega(self.j_t, c.guess_steps) * self.ds_t, c.min_arc_len, c.max_arc_len)
        self.ds_prev_t = torch.where(grow, self.ds_t, self.ds_prev_t)
        self.ds_t = torch.where(grow, ds_new, self.ds_t)
        self.k_t = self.k_t + end.to(self.k_t.dtype)
        self.j_t = torch.where(end, 0.0, self.j_t)
        done = lam.double() >= 1.0 - c.finish_tol
        if c.max_continuation_steps is not None:
            done = done | (self.k_t >= c.max_continuation_steps)
        finish, go = end & done, end & ~done
        take = go.to(dtype)
        ds = self.ds_t.to(dtype)
        d_theta = torch._foreach_sub(self.params, self.theta_ref)
        d_lam = lam - self.lam_ref
        _select_(self.theta_ref, self.params, take)
        self.lam_ref = torch.where(go, lam, self.lam_ref)
        if c.constraint == "textbook":
            norm = torch.sqrt(self.kappa ** 2 * _dot(d_theta, d_theta) + d_lam ** 2)
            still = norm == 0.0                                  # no move: ż = (0, 1)
            torch._foreach_mul_(d_theta, (~still).to(norm.dtype))
            d_lam, norm = torch.where(still, 1.0, d_lam), torch.where(still, 1.0, norm)
            torch._foreach_div_(d_theta, norm)
            t_lam, scale = d_lam / norm, ds
        else:
            norm_theta = torch.sqrt(_dot(d_theta, d_theta))
            torch._foreach_mul_(d_theta, torch.where(norm_theta > 0, torch.reciprocal(norm_theta) * ds, 0.0))
            t_lam, scale = (self.ds_t / self.ds_prev_t).to(dtype) * d_lam, torch.ones((), dtype=dtype, device=lam.device)
        _select_(self.tangent, d_theta, take)
        self.t_lam = torch.where(go, t_lam, self.t_lam)
        torch._foreach_addcmul_(self.params, self.tangent, [take * scale] * len(self.params))   # predictor
        lam_pred = lam + scale * self.t_lam
        if c.sphere_radius_m > 0:                          # the host knows that this corrector ended
            lam_pred = self._perturb(lam_pred, take)
        self.lam.set_tensor(torch.where(finish, 1.0, torch.where(go, lam_pred, lam)))
        self.arc = self.arc | go
        self.running = self.running & ~finish
        keep = (~finish).to(dtype)                         # after the finish ż = 0: projection and penalty are no-ops
        torch._foreach_mul_(self.tangent, keep)
        self.t_lam = self.t_lam * keep

    def _perturb(self, lam_pred: torch.Tensor, take: torch.Tensor) -> torch.Tensor:
        """sphere_radius_m: an orthogonal perturbation of radius m·Δs, drawn on the host at a corrector end."""
        unit = self._unit_tangent()
        d, d_lam_o = orthogonal_direction(unit[0], unit[1], self.kappa, self.generator)
        r = self.cfg.sphere_radius_m * self.ds_t.to(lam_pred.dtype) * take
        torch._foreach_addcmul_(self.params, [x.to(p.device) for x, p in zip(d, self.params)], [r] * len(self.params))
        return lam_pred + r * d_lam_o.to(lam_pred.device)

    def _learn(self, seen) -> None:
        """What the host learns from a flag it could read: a corrector ended (arclength from now on), PARC finished."""
        if seen is None:
            return
        finished, arc = seen
        if arc and self.phase == "natural":
            self.phase = "arclength"
        if finished:
            self._finish()

    def _unit_tangent(self):
        norm = torch.sqrt(self.kappa ** 2 * _dot(self.tangent, self.tangent) + self.t_lam ** 2)
        return [t / norm for t in self.tangent], self.t_lam / norm

    def _finish(self) -> None:
        self.phase = "done"
        self.running = torch.zeros((), dtype=torch.bool, device=self.lam.value.device)
        self.lam.value.requires_grad_(False)
        self.lam.value.grad = None
        self.lam.set(1.0)
        self.theta_ref, self.tangent = [], []

    # ---- checkpoints (host floats: the layout of earlier checkpoints; one read) ----------------------
    def state_dict(self) -> dict:
        lam, ds, ds_prev, j, k, arc, running, lam_ref, t_lam = torch.stack([
            self.lam.value.detach().double(), self.ds_t, self.ds_prev_t, self.j_t, self.k_t, self.arc.double(),
            self.running.double(), self.lam_ref.double(), self.t_lam.double()]).tolist()
        done = self.phase == "done" or not running
        phase = "done" if done else "arclength" if arc else "natural"
        n = min(int(j), self.cfg.ma_window + 1) if self.cfg.corrector_check == "loss" and not done else 0
        losses = self.recent[len(self.recent) - n:].tolist() if n else []
        return {"kind": "parc", "config": self.cfg.arclength_dict(), "lambda": 1.0 if done else lam, "phase": phase,
                "ds": ds, "ds_prev": ds_prev, "j": int(j), "losses": losses, "k": int(k),
                "steps": self.steps, "theta_ref": [] if done else [t.clone() for t in self.theta_ref],
                "lam_ref": lam_ref, "tangent": None if done or not arc else [t.clone() for t in self.tangent],
                "t_lam": t_lam, "generator": self.generator.get_state()}

    def load_state_dict(self, sd: dict) -> None:
        dev = self.lam.value.device
        f64 = dict(dtype=torch.float64, device=dev)
        self.phase, self.steps = sd["phase"], sd["steps"]
        self.ds_t, self.ds_prev_t = torch.tensor(float(sd["ds"]), **f64), torch.tensor(float(sd["ds_prev"]), **f64)
        self.j_t, self.k_t = torch.tensor(float(sd["j"]), **f64), torch.tensor(float(sd["k"]), **f64)
        self.j_host = int(sd["j"])
        self.arc = torch.tensor(self.phase != "natural", device=dev)
        self.running = torch.tensor(self.phase != "done", device=dev)
        self.lam_ref, self.t_lam = self._scalar(sd["lam_ref"]), self._scalar(sd["t_lam"])
        self.recent = torch.full((self.cfg.ma_window + 1,), float("nan"), **f64)
        kept = [float(x) for x in sd["losses"]][-len(self.recent):]
        if kept:
            self.recent[len(self.recent) - len(kept):] = torch.tensor(kept, **f64)
        devs = [p.device for p in self.params]
        self.theta_ref = [t.clone().to(d) for t, d in zip(sd["theta_ref"], devs)]
        self.tangent = ([torch.zeros_like(p) for p in self.params] if sd["tangent"] is None
                        else [t.clone().to(d) for t, d in zip(sd["tangent"], devs)])
        self.generator.set_state(sd["generator"])
        self.lam.set(sd["lambda"])
        self.lam.value.requires_grad_(self.phase != "done")
        if self.phase == "done":
            self.theta_ref, self.tangent = [], []
