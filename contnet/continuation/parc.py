"""PARC: pseudo-arclength continuation (continuation spec §2.6) as a training component.

The method is mathematics, in parc_math.py: the state of the walk, the corrector, the end test, the Δs rule, the
secant predictor and the finish, as device arithmetic over a few tensors.  This module is its executor
(`PARCDriver`) and its options.  One engine step = one closure call = one corrector iteration:

  1. the closure's backward fills ∇θL and ∂L/∂λ (λ is an unknown: its buffer requires grad while PARC runs);
     ∂L/∂λ and the loss the end test reads are averaged over the ranks (`rank_mean`, the identity in one process);
  2. the inner optimizer steps θ; λ takes its step and (textbook) z is projected onto the arclength hyperplane;
  3. the end test decides on the device whether this corrector ends, and whether continuation finishes with it;
  4. the end of a corrector (Δs rule, new secant, predictor) runs as device arithmetic masked by that decision —
     an exact no-op where it is False — at every step at which the host cannot rule out an end.

The host learns the flags of step 3 (ended, finished) through `DelayedFlags`: exactly `flag_delay` steps after
they were set, on every device, never reading a device tensor.  What it learns only decides how much work runs
(end-of-corrector work that cannot be needed is skipped: a corrector has at least `corrector_length_bounds`'s
first value of iterations; the host stops calling PARC once it learns of the finish, until then every PARC update
is a no-op): never a number.  So the run is the same, bit for bit, for every delay and device
(tests/continuation/test_parc.py), and no step reads anything on the host (tests/engine/test_hostsync.py).

λ is clipped to [0, 1].  When a corrector ends with λ ≥ 1 − `finish_tol`, λ is set to exactly 1 and, once the
host knows, the buffers are freed and the optimizer continues as its inner optimizer.  Ants (several perturbed
correctors, best kept) are not run: one engine step has one closure; `sphere_radius_m` > 0 perturbs the single
prediction orthogonally, with normal draws made on the host ahead of the corrector end that uses them.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Optional

import torch

from contnet.schema import Block, opt

from . import parc_math as M
from .state import DelayedFlags, LambdaState

CONSTRAINTS = ("textbook", "authors")
CORRECTOR_CHECKS = ("fixed", "loss")
FLAG_DELAY = 8      # steps between the device setting PARC's flags and the host reading them, on every device


@dataclass
class ArclengthOptions(Block):
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
    # reads anything on the host inside a step (tests/engine/test_hostsync.py).
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


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


class PARCDriver:
    """Runs the walk of parc_math on θ (`params`) and the model's λ around an inner optimizer.  `rank_mean` averages
    a tensor over the ranks of a data-parallel run (the identity in one process); `flag_delay` is the number of steps
    after which the host learns a step's flags (with sphere_radius_m > 0 at most the shortest corrector, so that the
    next perturbation's draws are ready before it can be used)."""

    def __init__(self, cfg: ArclengthOptions, lam: LambdaState, params: list[torch.Tensor], lr: float,
                 rank_mean: Callable[[torch.Tensor], torch.Tensor] = _identity, flag_delay: int = FLAG_DELAY):
        self.cfg, self.lam, self.params, self.rank_mean = cfg, lam, params, rank_mean
        self.kappa = M.theta_weight(cfg, params)
        self.lambda_lr = lr if cfg.lambda_lr is None else float(cfg.lambda_lr)
        self.shortest, self.longest = M.corrector_length_bounds(cfg)
        self.delay = min(flag_delay, self.shortest) if cfg.sphere_radius_m > 0 else flag_delay
        self.generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.state = M.start(cfg, params, lam.tensor())
            self.work = [torch.empty_like(p) for p in params]     # lent to the functions of parc_math
        self.done = False
        self._restart_host_view(steps=0, j=0, k=0)
        lam.set(min(cfg.lambda_init + cfg.natural_step, 1.0))
        lam.value.requires_grad_(True)
        if cfg.lambda_init >= 1.0 - cfg.finish_tol:     # no path to walk: the inner optimizer from step one
            self._finish()

    def _restart_host_view(self, steps: int, j: int, k: int) -> None:
        """What the host knows, from a state it has read: the last corrector end, the ends so far."""
        self.steps = steps                      # engine steps taken while active
        self.known_end, self.known_through = steps - j, steps   # the last end it knows of; flags read up to here
        self.ends_known, self.finish_seen = k, False
        self.flags = DelayedFlags(self.lam.value.device, size=2, delay=self.delay)
        self.noise = self.noise_gen_state = self.noise_after = None
        self._draw_noise()

    # host views of the device state (each one read: for tests, logs and checkpoints, not for the step)
    ds = property(lambda self: float(self.state.ds))
    ds_prev = property(lambda self: float(self.state.ds_prev))
    j = property(lambda self: int(self.state.j))
    k = property(lambda self: int(self.state.k))

    @property
    def phase(self) -> str:
        return "done" if self.done else "arclength" if bool(self.state.arc) else "natural"

    @property
    def active(self) -> bool:
        return not self.done

    def zero_grad(self) -> None:
        self.lam.value.grad = None

    def residual(self) -> torch.Tensor:
        with torch.no_grad():
            return M.residual(self.params, self.lam.tensor(), self.state, self.kappa, self.work)

    # ---- one engine step = one corrector iteration ------------------------------------------------
    def step(self, inner: torch.optim.Optimizer, closure=None):
        self.lam.value.grad = None
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        c, s = self.cfg, self.state
        with torch.no_grad():
            g_lam, seen_loss = self._mean_over_ranks(loss)
            if c.constraint == "authors":
                g_lam = M.add_penalty_gradient(self.params, g_lam, s, c.lagrange_mu)
            inner.step()
            lam = M.corrector_lambda(self.params, self.lam.tensor(), g_lam, s, c, self.kappa, self.lambda_lr, self.work)
            self.lam.set_tensor(lam)
            s.j = s.j + 1
            self.steps += 1
            s.recent, end = M.corrector_ended(s, seen_loss, c)
            finish = end & M.walk_done(self.lam.tensor(), s.k + end.to(s.k.dtype), c)
            for step, (ended, finished) in self.flags.post(torch.stack([end, finish]), self.steps):
                self._learn(step, ended, finished)
            if self.known_end < self.steps:
                self._draw_noise()
            if self._may_end():
                self.lam.set_tensor(M.end_corrector(self.params, self.lam.tensor(), s, end, finish, c, self.kappa,
                                                    self.work, self.noise))
                if self.shortest == self.longest and self.steps - self.known_end == self.longest:
                    self._learn(self.steps, True, False)     # every corrector has `longest` iterations: it ended
                self._draw_noise()
            if self.finish_seen:
                self._finish()
        return loss

    def _mean_over_ranks(self, loss):
        """∂L/∂λ (λ is a buffer: DDP does not average its gradient) and the loss, averaged over the ranks in one
        collective, so that every rank takes the λ step and ends its correctors as one process with the global
        batch would.  In one process the values come back unchanged."""
        grad = self.lam.value.grad
        g_lam = torch.zeros_like(self.lam.tensor()) if grad is None else grad.detach()
        if loss is None:
            return self.rank_mean(g_lam), None
        both = torch.promote_types(g_lam.dtype, loss.dtype)
        mean = self.rank_mean(torch.cat([g_lam.reshape(1).to(both), loss.detach().reshape(1).to(both)]))
        return mean[0].reshape(g_lam.shape).to(g_lam.dtype), mean[1].to(loss.dtype)

    def _learn(self, step: int, ended: bool, finished: bool) -> None:
        """The host learns (or infers) step `step`'s flags."""
        self.known_through = max(self.known_through, step)
        if ended and step > self.known_end:
            self.known_end, self.ends_known = step, self.ends_known + 1
        self.finish_seen |= finished

    def _may_end(self) -> bool:
        """Can the corrector end at this step, as far as the host knows?  It cannot if the host has read this step's
        flag, or if fewer than `shortest` steps passed since the last end it knows of (later ends are later still)."""
        if self.known_through >= self.steps:
            return self.known_end == self.steps
        return self.steps - self.known_end >= self.shortest

    def _draw_noise(self) -> None:
        """sphere_radius_m > 0: the normal draws of the perturbation of the first corrector end after the last one
        the host knows of (host generator), unless they are drawn already."""
        if self.cfg.sphere_radius_m > 0 and not self.done and self.noise_after != self.known_end:
            self.noise_gen_state, self.noise_after = self.generator.get_state(), self.known_end
            self.noise = M.draw_noise(self.params, self.generator)

    def _finish(self) -> None:
        self.done = True
        self.state.running = torch.zeros((), dtype=torch.bool, device=self.lam.value.device)
        self.lam.value.requires_grad_(False)
        self.lam.value.grad = None
        self.lam.set(1.0)
        self.state.theta_ref, self.state.tangent, self.work, self.noise = [], [], [], None

    # ---- checkpoints (host floats: the layout of earlier checkpoints; one read) ----------------------
    def state_dict(self) -> dict:
        s = self.state
        lam, ds, ds_prev, j, k, arc, running, lam_ref, t_lam = torch.stack([
            self.lam.value.detach().double(), s.ds, s.ds_prev, s.j, s.k, s.arc.double(),
            s.running.double(), s.lam_ref.double(), s.t_lam.double()]).tolist()
        done = self.done or not running
        phase = "done" if done else "arclength" if arc else "natural"
        n = min(int(j), self.cfg.ma_window + 1) if self.cfg.corrector_check == "loss" and not done else 0
        losses = s.recent[len(s.recent) - n:].tolist() if n else []
        # the generator as of the next perturbation's draws: before the pending ones, unless an end used them
        gen = self.noise_gen_state if self.noise is not None and int(k) == self.ends_known else self.generator.get_state()
        return {"kind": "parc", "config": self.cfg.arclength_dict(), "lambda": 1.0 if done else lam, "phase": phase,
                "ds": ds, "ds_prev": ds_prev, "j": int(j), "losses": losses, "k": int(k),
                "steps": self.steps, "theta_ref": [] if done else [t.clone() for t in s.theta_ref],
                "lam_ref": lam_ref, "tangent": None if done or not arc else [t.clone() for t in s.tangent],
                "t_lam": t_lam, "generator": gen}

    def load_state_dict(self, sd: dict) -> None:
        dev = self.lam.value.device
        f64 = dict(dtype=torch.float64, device=dev)
        scalar = dict(dtype=self.lam.value.dtype, device=dev)
        s, devs = self.state, [p.device for p in self.params]
        s.ds, s.ds_prev = torch.tensor(float(sd["ds"]), **f64), torch.tensor(float(sd["ds_prev"]), **f64)
        s.j, s.k = torch.tensor(float(sd["j"]), **f64), torch.tensor(float(sd["k"]), **f64)
        s.arc = torch.tensor(sd["phase"] != "natural", device=dev)
        s.running = torch.tensor(sd["phase"] != "done", device=dev)
        s.lam_ref, s.t_lam = torch.tensor(float(sd["lam_ref"]), **scalar), torch.tensor(float(sd["t_lam"]), **scalar)
        s.recent = torch.full((self.cfg.ma_window + 1,), float("nan"), **f64)
        kept = [float(x) for x in sd["losses"]][-len(s.recent):]
        if kept:
            s.recent[len(s.recent) - len(kept):] = torch.tensor(kept, **f64)
        s.theta_ref = [t.clone().to(d) for t, d in zip(sd["theta_ref"], devs)]
        s.tangent = ([torch.zeros_like(p) for p in self.params] if sd["tangent"] is None
                     else [t.clone().to(d) for t, d in zip(sd["tangent"], devs)])
        self.generator.set_state(sd["generator"])
        self.done = sd["phase"] == "done"
        self._restart_host_view(sd["steps"], int(sd["j"]), int(sd["k"]))
        self.lam.set(sd["lambda"])
        self.lam.value.requires_grad_(not self.done)
        self.work = [] if self.done else [torch.empty_like(p) for p in self.params]
        if self.done:
            s.theta_ref, s.tangent = [], []
