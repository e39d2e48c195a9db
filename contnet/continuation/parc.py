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
              test, relative tolerance here; it reads the losses on the host every iteration); with
              `corrector_check=fixed` always after `corrector_steps` (no host read inside a corrector).
  Δs update   C2's corrector_omega rule from the iterations used j: ω = 1 + G/j if j ≤ G else
              max(G/j, 0.05); Δs ← clip(ω·Δs, min_arc_len, max_arc_len).
  start       C2's natural start: from (θ0, λ_init) one unconstrained corrector at λ_init +
              natural_step gives the second point of the first secant.

λ is clipped to [0, 1].  When a corrector ends with λ ≥ 1 − `finish_tol`, λ is set to exactly 1, the
buffers are freed, and the optimizer continues as its inner optimizer.

Host transfers: θ, λ, ∂L/∂λ, the projection and the secant stay on the device; with the fixed
corrector a corrector iteration reads nothing, and each corrector end reads λ once (the λ ≥ 1 − tol
decision); Δs depends only on j, known on the host.

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

from contnet.schema import Options, opt

from .state import LambdaState

CONSTRAINTS = ("textbook", "authors")
CORRECTOR_CHECKS = ("fixed", "loss")


@dataclass
class ArclengthOptions(Options):
    """The PARC keys of optimizer=parc.  Defaults are the CLI's: C2's AE values (delta_s 0.05 in [0.008, 0.02],
    correctors of up to 300 epochs) walk far more slowly than the default digits_ae budget (≈380 steps)
    allows, so the arclength values are scaled so that λ reaches 1 well inside it.  C2's values are the
    preset conf/optimizer/arclength/authors.yaml (`optimizer=parc optimizer/arclength=authors`)."""
    group = "optimizer"          # errors read `optimizer.<key>=...` also for a bare ArclengthOptions
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
    # (docs/results/reproduce-cpu-tuned.md): it reads the recent losses on the host at every iteration from
    # j = max(corrector_min_steps, ma_window + 1) on.  fixed = every corrector runs corrector_steps iterations:
    # no device→host read inside a corrector (one λ read at its end), so on a GPU the host never waits for a
    # step; fixed makes j, and so the Δs rule, constant.  fixed changes PARC's results and has not been
    # compared with loss in a tuned study, so it is a switch, not the default (yet).
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


def corrector_omega(j: int, guess: int) -> float:
    """Δs factor from the corrector iterations used (C2): fast convergence grows Δs, slow shrinks it."""
    return 1.0 + guess / j if j <= guess else max(guess / j, 0.05)


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


class PARCDriver:
    def __init__(self, cfg: ArclengthOptions, lam: LambdaState, params: list[torch.Tensor], lr: float):
        self.cfg, self.lam, self.params = cfg, lam, params
        n = sum(p.numel() for p in params)
        self.kappa = 1.0 / math.sqrt(max(n, 1)) if cfg.theta_scale == "rms" else float(cfg.theta_scale)
        self.lambda_lr = lr if cfg.lambda_lr is None else float(cfg.lambda_lr)
        self.ds, self.ds_prev = cfg.delta_s, cfg.delta_s
        self.phase = "natural"            # natural → arclength → done
        self.j, self.losses = 0, []       # corrector iterations; losses of the current corrector (check=loss)
        self.k = 0                        # continuation steps finished
        self.steps = 0                    # engine steps taken while active
        self.generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.theta_ref = [p.detach().clone() for p in params]   # z_k (θ part)
        self.lam_ref = self._scalar(cfg.lambda_init)               # z_k (λ part), on λ's device
        self.tangent: list[torch.Tensor] | None = None   # textbook: unit ż θ part; authors: v_θ
        self.t_lam = self._scalar(0.0)
        lam.set(min(cfg.lambda_init + cfg.natural_step, 1.0))
        lam.value.requires_grad_(True)
        if cfg.lambda_init >= 1.0 - cfg.finish_tol:     # no path to walk: the inner optimizer from step one
            self._finish()

    def _scalar(self, x) -> torch.Tensor:
        v = self.lam.value
        return torch.as_tensor(x, dtype=v.dtype).to(v.device)

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
        with torch.no_grad():
            grad = self.lam.value.grad
            g_lam = torch.zeros_like(self.lam.tensor()) if grad is None else grad.detach()
            if self.phase == "arclength" and self.cfg.constraint == "authors":
                mu = self.cfg.lagrange_mu
                for p, v in zip(self.params, self.tangent):     # ∇(μ·N) = μ·v
                    if p.grad is not None:
                        p.grad.add_(v, alpha=mu)
                g_lam = g_lam + mu * self.t_lam
            inner.step()
            if self.phase == "arclength":
                lam = self.lam.tensor() - self.lambda_lr * g_lam
                lam = self._project(lam) if self.cfg.constraint == "textbook" else lam
                self.lam.set_tensor(lam)                         # clamp to [0, 1] on the device
        self.steps += 1
        self.j += 1
        if loss is not None and self.cfg.corrector_check == "loss":
            self.losses.append(loss.detach().double())
        if self._corrector_done():
            self._end_corrector(inner)
        return loss

    @torch.no_grad()
    def residual(self, lam: torch.Tensor | None = None) -> torch.Tensor:
        """Textbook N(z) = ⟨z − z_k, ż⟩ − Δs (κ-weighted), a 0-dim tensor on λ's device."""
        lam = self.lam.tensor() if lam is None else lam
        diff = torch._foreach_sub(self.params, self.theta_ref)
        return self.kappa ** 2 * _dot(diff, self.tangent) + (lam - self.lam_ref) * self.t_lam - self.ds

    @torch.no_grad()
    def _project(self, lam: torch.Tensor) -> torch.Tensor:
        n = self.residual(lam)
        torch._foreach_sub_(self.params, torch._foreach_mul(self.tangent, n))
        return lam - n * self.t_lam

    def _corrector_done(self) -> bool:
        c = self.cfg
        if self.j >= c.corrector_steps:
            return True
        if c.corrector_check == "fixed":
            return False
        if self.j < max(c.corrector_min_steps, c.ma_window + 1) or len(self.losses) < c.ma_window + 1:
            return False
        w = c.ma_window
        recent = torch.stack(self.losses[-w - 1:]).tolist()             # one transfer per iteration
        now, before = sum(recent[1:]) / w, sum(recent[:-1]) / w
        return abs(now - before) <= c.loss_tol * max(abs(before), 1e-12)

    # ---- end of a corrector: Δs update, new secant, predictor ----------------------------------------
    @torch.no_grad()
    def _end_corrector(self, inner) -> None:
        c = self.cfg
        if self.phase == "arclength":
            self.ds_prev = self.ds
            self.ds = min(max(corrector_omega(self.j, c.guess_steps) * self.ds, c.min_arc_len), c.max_arc_len)
        self.k += 1
        self.j, self.losses = 0, []
        limit = c.max_continuation_steps is not None and self.k >= c.max_continuation_steps
        if limit or self.lam.get() >= 1.0 - c.finish_tol:     # the one host read of a corrector
            return self._finish()
        lam = self.lam.tensor().clone()
        d_theta = torch._foreach_sub(self.params, self.theta_ref)
        d_lam = lam - self.lam_ref
        torch._foreach_copy_(self.theta_ref, self.params)
        self.lam_ref = lam
        if c.constraint == "textbook":
            norm = torch.sqrt(self.kappa ** 2 * _dot(d_theta, d_theta) + d_lam ** 2)
            still = norm == 0.0                                  # no move: ż = (0, 1)
            torch._foreach_mul_(d_theta, (~still).to(norm.dtype))
            d_lam, norm = torch.where(still, 1.0, d_lam), torch.where(still, 1.0, norm)
            torch._foreach_div_(d_theta, norm)
            self.tangent, self.t_lam = d_theta, d_lam / norm
            step_theta, step_lam = self.tangent, self.t_lam
            scale = self.ds
        else:
            norm_theta = torch.sqrt(_dot(d_theta, d_theta))
            torch._foreach_mul_(d_theta, torch.where(norm_theta > 0, self.ds / norm_theta, 0.0))
            self.tangent = d_theta
            self.t_lam = self.ds / self.ds_prev * d_lam
            step_theta, step_lam, scale = self.tangent, self.t_lam, 1.0
        torch._foreach_add_(self.params, step_theta, alpha=scale)      # predictor
        lam_pred = lam + scale * step_lam
        if c.sphere_radius_m > 0:
            unit = self._unit_tangent()
            d, d_lam_o = orthogonal_direction(unit[0], unit[1], self.kappa, self.generator)
            r = c.sphere_radius_m * self.ds
            torch._foreach_add_(self.params, [x.to(p.device) for x, p in zip(d, self.params)], alpha=r)
            lam_pred = lam_pred + r * d_lam_o.to(lam_pred.device)
        self.lam.set_tensor(lam_pred)
        self.phase = "arclength"

    def _unit_tangent(self):
        norm = torch.sqrt(self.kappa ** 2 * _dot(self.tangent, self.tangent) + self.t_lam ** 2)
        return [t / norm for t in self.tangent], self.t_lam / norm

    def _finish(self) -> None:
        self.phase = "done"
        self.lam.value.requires_grad_(False)
        self.lam.value.grad = None
        self.lam.set(1.0)
        self.theta_ref, self.tangent = [], None

    # ---- checkpoints (host floats: the layout of earlier checkpoints) --------------------------------
    def state_dict(self) -> dict:
        losses = torch.stack(self.losses).tolist() if self.losses else []
        return {"kind": "parc", "config": self.cfg.arclength_dict(), "lambda": self.lam.get(), "phase": self.phase,
                "ds": self.ds, "ds_prev": self.ds_prev, "j": self.j, "losses": losses, "k": self.k,
                "steps": self.steps, "theta_ref": [t.clone() for t in self.theta_ref],
                "lam_ref": float(self.lam_ref),
                "tangent": None if self.tangent is None else [t.clone() for t in self.tangent],
                "t_lam": float(self.t_lam), "generator": self.generator.get_state()}

    def load_state_dict(self, sd: dict) -> None:
        for key in ("phase", "ds", "ds_prev", "j", "k", "steps"):
            setattr(self, key, sd[key])
        self.lam_ref, self.t_lam = self._scalar(sd["lam_ref"]), self._scalar(sd["t_lam"])
        self.losses = [torch.tensor(float(x), dtype=torch.float64, device=self.lam.value.device)
                       for x in sd["losses"]]
        dev = [p.device for p in self.params]
        self.theta_ref = [t.clone().to(d) for t, d in zip(sd["theta_ref"], dev)]
        self.tangent = None if sd["tangent"] is None else [t.clone().to(d) for t, d in zip(sd["tangent"], dev)]
        self.generator.set_state(sd["generator"])
        self.lam.set(sd["lambda"])
        self.lam.value.requires_grad_(self.phase != "done")
