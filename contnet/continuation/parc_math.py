"""PARC as mathematics (continuation spec §2.6): the state of the walk and the functions that move it.

z = (θ, λ).  θ is the model's weights (a list of tensors), λ its homotopy parameter (a 0-dim tensor); the rest
of the walk is an `ArcState` of tensors on λ's device.  Every function here is device arithmetic (`draw_noise`
aside, which draws on a host generator): nothing is read on the host, nothing branches on a tensor's value, so
the same code runs on CPU and CUDA and a masked update (`end` = 0) leaves everything exactly as it was.  θ and
the big lists are updated in place; scalars are returned.
Who calls these, when, and how the host learns what they decided is the executor's (parc.py, PARCDriver).

  corrector   one iteration: the inner optimizer moves θ (with the authors' penalty gradient μ·v added to ∇θL),
              λ ← λ − lr_λ·(∂L/∂λ + μ·v_λ), then (textbook) z is projected onto N(z) = ⟨z − z_k, ż⟩ − Δs = 0.
  end test    C2's early stop: the running mean of the last ma_window losses moved by ≤ loss_tol (relative), from
              j = max(corrector_min_steps, ma_window + 1) on; or j = corrector_steps.  `fixed`: j = corrector_steps.
  Δs rule     C2's corrector_omega: ω = 1 + G/j if j ≤ G else max(G/j, 0.05); Δs ← clip(ω·Δs, min, max).
  secant      textbook: ż = (z − z_k)/‖z − z_k‖, step Δs·ż; authors: v = (Δs·Δθ/‖Δθ‖, (Δs/Δs_prev)·Δλ), step v.
  predictor   z_k ← z; z ← z + step; optionally moved by sphere_radius_m·Δs along a random direction ⊥ ż.
  finish      a corrector that ends with λ ≥ 1 − finish_tol (or after max_continuation_steps) sets λ = 1 and
              ż = 0, so every later update here is a no-op.

The inner product on z weighs θ by κ² (`theta_scale`), so ⟨z, z⟩ = κ²‖θ‖² + λ².
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

Tensors = list[torch.Tensor]


@dataclass
class ArcState:
    """The walk besides θ and λ: on λ's device; Δs, counters and losses in float64, flags as booleans."""
    theta_ref: Tensors        # θ_k, the last corrected point
    lam_ref: torch.Tensor     # λ_k
    tangent: Tensors          # ż_θ (textbook: unit secant; authors: v_θ); 0 before the first secant, after the finish
    t_lam: torch.Tensor       # ż_λ
    ds: torch.Tensor          # Δs
    ds_prev: torch.Tensor     # Δs of the corrector before
    j: torch.Tensor           # iterations of this corrector
    k: torch.Tensor           # correctors done
    arc: torch.Tensor         # the arclength phase: the natural corrector has ended
    running: torch.Tensor     # False once λ was set to 1
    recent: torch.Tensor      # the last ma_window + 1 losses (early stop)


def start(cfg, theta: Tensors, lam: torch.Tensor) -> ArcState:
    """z_0 = (θ, λ_init) before the natural corrector (C2's natural start); λ itself goes to λ_init + natural_step."""
    f64 = dict(dtype=torch.float64, device=lam.device)
    scalar = dict(dtype=lam.dtype, device=lam.device)
    return ArcState(theta_ref=[p.detach().clone() for p in theta], lam_ref=torch.tensor(cfg.lambda_init, **scalar),
                    tangent=[torch.zeros_like(p) for p in theta], t_lam=torch.zeros((), **scalar),
                    ds=torch.tensor(cfg.delta_s, **f64), ds_prev=torch.tensor(cfg.delta_s, **f64),
                    j=torch.zeros((), **f64), k=torch.zeros((), **f64),
                    arc=torch.zeros((), dtype=torch.bool, device=lam.device),
                    running=torch.ones((), dtype=torch.bool, device=lam.device),
                    recent=torch.full((cfg.ma_window + 1,), float("nan"), **f64))


def theta_weight(cfg, theta: Tensors) -> float:
    """κ: "rms" = 1/√n (θ measured as an RMS change), or the number given."""
    return 1.0 / math.sqrt(max(sum(p.numel() for p in theta), 1)) if cfg.theta_scale == "rms" else float(cfg.theta_scale)


def dot(a: Tensors, b: Tensors) -> torch.Tensor:
    """Σ ⟨a_i, b_i⟩ as a 0-dim tensor."""
    return sum(torch.sum(x * y) for x, y in zip(a, b)) if a else torch.zeros(())


def difference(a: Tensors, b: Tensors, work: Tensors) -> Tensors:
    """a − b, written into `work` (a list shaped like θ that the caller lends: no list of new tensors per step, which
    on the CPU costs more than the arithmetic)."""
    torch._foreach_copy_(work, a)
    torch._foreach_sub_(work, b)
    return work


# ---- the corrector ----------------------------------------------------------------------------------------
def residual(theta: Tensors, lam: torch.Tensor, s: ArcState, kappa: float, work: Tensors) -> torch.Tensor:
    """Textbook N(z) = ⟨z − z_k, ż⟩ − Δs (the products (θ − θ_k)·ż_θ are formed in `work`: what dot() computes)."""
    torch._foreach_mul_(difference(theta, s.theta_ref, work), s.tangent)
    along = sum(torch.sum(x) for x in work) if work else torch.zeros(())
    return kappa ** 2 * along + (lam - s.lam_ref) * s.t_lam - s.ds.to(lam.dtype)


def project(theta: Tensors, lam: torch.Tensor, s: ArcState, kappa: float, work: Tensors) -> torch.Tensor:
    """z onto N(z) = 0 along ż (θ in place; the new λ returned).  With ż = 0 (no secant yet, finished): no change."""
    n = residual(theta, lam, s, kappa, work)
    torch._foreach_copy_(work, s.tangent)
    torch._foreach_mul_(work, n)
    torch._foreach_sub_(theta, work)                      # θ − n·ż_θ
    return lam - n * s.t_lam


def add_penalty_gradient(theta: Tensors, g_lam: torch.Tensor, s: ArcState, mu: float) -> torch.Tensor:
    """The authors' fixed-μ penalty μ·(⟨z − z_pred, v⟩ − Δs): its gradient μ·v added to ∇θ (in place) and ∂/∂λ."""
    for p, v in zip(theta, s.tangent):
        if p.grad is not None:
            p.grad.add_(v, alpha=mu)
    return g_lam + mu * s.t_lam


def corrector_lambda(theta: Tensors, lam: torch.Tensor, g_lam: torch.Tensor, s: ArcState, cfg, kappa: float,
                     lambda_lr: float, work: Tensors) -> torch.Tensor:
    """λ after one corrector iteration (θ has had its inner-optimizer step): a gradient step, then the projection
    (textbook).  λ moves only in the arclength phase; the natural corrector holds it."""
    moved = lam - lambda_lr * g_lam
    if cfg.constraint == "textbook":
        moved = project(theta, moved, s, kappa, work)
    return torch.where(s.arc & s.running, moved, lam)


# ---- the end test -----------------------------------------------------------------------------------------
def corrector_length_bounds(cfg) -> tuple[int, int]:
    """The fewest and the most iterations a corrector can have (j at its end)."""
    if cfg.corrector_check == "fixed":
        return cfg.corrector_steps, cfg.corrector_steps
    return min(cfg.corrector_steps, max(cfg.corrector_min_steps, cfg.ma_window + 1)), cfg.corrector_steps


def corrector_ended(s: ArcState, loss, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """(the losses kept, whether this corrector ends now) after iteration j of it."""
    if cfg.corrector_check == "fixed":
        return s.recent, s.running & (s.j >= cfg.corrector_steps)
    w = cfg.ma_window
    value = loss.detach().to(s.recent) if loss is not None else s.recent.new_tensor(float("nan"))
    recent = torch.cat([s.recent[1:], value.reshape(1)])
    now = torch.cumsum(recent[1:], 0)[-1] / w                 # sequential sums, as the host rule added them
    before = torch.cumsum(recent[:-1], 0)[-1] / w
    still = (now - before).abs() <= cfg.loss_tol * torch.clamp(before.abs(), min=1e-12)
    early = (s.j >= max(cfg.corrector_min_steps, w + 1)) & still
    return recent, s.running & ((s.j >= cfg.corrector_steps) | early)


def walk_done(lam: torch.Tensor, k: torch.Tensor, cfg) -> torch.Tensor:
    """Continuation is over: λ ≥ 1 − finish_tol, or k reached max_continuation_steps."""
    done = lam.double() >= 1.0 - cfg.finish_tol
    return done | (k >= cfg.max_continuation_steps) if cfg.max_continuation_steps is not None else done


# ---- the end of a corrector: Δs rule, secant, predictor ---------------------------------------------------------
def corrector_omega(j, guess: int) -> torch.Tensor:
    """Δs factor from the iterations used (C2): fast convergence grows Δs, slow shrinks it.  `j` a number or a
    float64 tensor; the result a float64 tensor on its device."""
    j = torch.as_tensor(j, dtype=torch.float64)
    return torch.where(j <= guess, 1.0 + guess / j, torch.clamp(guess / j, min=0.05))


def next_arc_length(s: ArcState, cfg) -> torch.Tensor:
    return torch.clamp(corrector_omega(s.j, cfg.guess_steps) * s.ds, cfg.min_arc_len, cfg.max_arc_len)


def end_corrector(theta: Tensors, lam: torch.Tensor, s: ArcState, end: torch.Tensor, finish: torch.Tensor,
                  cfg, kappa: float, work: Tensors, noise=None) -> torch.Tensor:
    """Everything a corrector end does, selected by the 0-dim booleans `end` and `finish` (= end & walk_done):
    where `end` is False, every tensor keeps its value exactly.  Returns the new λ."""
    lam = lam.clone()
    dtype = lam.dtype
    grow = end & s.arc                                     # Δs adapts after arclength correctors only
    s.ds, s.ds_prev = torch.where(grow, next_arc_length(s, cfg), s.ds), torch.where(grow, s.ds, s.ds_prev)
    s.k = s.k + end.to(s.k.dtype)
    s.j = torch.where(end, 0.0, s.j)
    go = end & ~finish
    take, ds = go.to(dtype), s.ds.to(dtype)
    d_theta = difference(theta, s.theta_ref, work)
    d_lam = lam - s.lam_ref
    torch._foreach_lerp_(s.theta_ref, theta, [take] * len(theta))     # exact at weights 0 and 1
    s.lam_ref = torch.where(go, lam, s.lam_ref)
    if cfg.constraint == "textbook":                       # unit secant; no move: ż = (0, 1)
        norm = torch.sqrt(kappa ** 2 * dot(d_theta, d_theta) + d_lam ** 2)
        still = norm == 0.0
        d_lam, unit = torch.where(still, 1.0, d_lam), torch.where(still, 1.0, norm)
        torch._foreach_div_(d_theta, torch.where(still | finish, math.inf, norm))   # 0 where still or finished
        t_lam, scale = d_lam / unit, ds
    else:                                                  # v = (Δs·Δθ/‖Δθ‖, (Δs/Δs_prev)·Δλ)
        norm_theta = torch.sqrt(dot(d_theta, d_theta))
        factor = torch.where(norm_theta > 0, torch.reciprocal(norm_theta) * ds, 0.0)
        torch._foreach_mul_(d_theta, torch.where(finish, 0.0, factor))
        t_lam, scale = (s.ds / s.ds_prev).to(dtype) * d_lam, torch.ones((), dtype=dtype, device=lam.device)
    torch._foreach_lerp_(s.tangent, d_theta, [end.to(dtype)] * len(theta))   # the new secant; 0 at the finish
    s.t_lam = torch.where(go, t_lam, s.t_lam) * (~finish).to(dtype)
    torch._foreach_addcmul_(theta, s.tangent, [take * scale] * len(theta))   # predictor
    lam_pred = lam + scale * s.t_lam
    if cfg.sphere_radius_m > 0:
        lam_pred = perturb(theta, lam_pred, s, go, cfg.sphere_radius_m, kappa, noise)
    s.arc = s.arc | go
    s.running = s.running & ~finish
    return torch.where(finish, 1.0, torch.where(go, lam_pred, lam))


# ---- the orthogonal perturbation (sphere_radius_m > 0) ------------------------------------------------------
def draw_noise(theta: Tensors, generator: torch.Generator):
    """The normal draws of one perturbation, on the host generator, in the order the direction uses them."""
    raw = [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in theta]
    ref = theta[0]
    return raw, torch.randn((), generator=generator, dtype=ref.dtype).to(ref.device)


def orthogonalize(raw: Tensors, raw_lam: torch.Tensor, t_theta: Tensors, t_lam, kappa: float, safe=None):
    """The unit direction (κ-weighted) along (raw, raw_lam) with its ż-component removed, ż = (t_θ, t_λ) a unit
    vector.  `safe` (0-dim bool): where False, a zero length is replaced by 1 (a finite, masked result)."""
    c = kappa ** 2 * dot(raw, t_theta) + raw_lam * t_lam
    d = torch._foreach_sub(raw, torch._foreach_mul(t_theta, c))
    d_lam = raw_lam - c * t_lam
    norm = torch.sqrt(kappa ** 2 * dot(d, d) + d_lam ** 2)
    norm = norm if safe is None else torch.where(safe, norm, 1.0)
    torch._foreach_div_(d, norm)
    return d, d_lam / norm


def orthogonal_direction(t_theta: Tensors, t_lam, kappa: float, generator=None):
    """A random unit direction d with ⟨d, ż⟩ = 0 for the unit ż = (t_θ, t_λ)."""
    raw, raw_lam = draw_noise(t_theta, generator)
    return orthogonalize(raw, raw_lam, t_theta, t_lam, kappa)


def perturb(theta: Tensors, lam_pred: torch.Tensor, s: ArcState, go: torch.Tensor, radius_m: float, kappa: float,
            noise) -> torch.Tensor:
    """The prediction moved by radius m·Δs along a random direction orthogonal to the new ż (θ in place)."""
    norm = torch.sqrt(kappa ** 2 * dot(s.tangent, s.tangent) + s.t_lam ** 2)
    norm = torch.where(go, norm, 1.0)
    unit = [t / norm for t in s.tangent]
    d, d_lam = orthogonalize(noise[0], noise[1], unit, s.t_lam / norm, kappa, safe=go)
    r = radius_m * s.ds.to(lam_pred.dtype) * go.to(lam_pred.dtype)
    torch._foreach_addcmul_(theta, d, [r] * len(theta))
    return lam_pred + r * d_lam
