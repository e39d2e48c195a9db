"""The model-level homotopy parameter λ.

One `LambdaState` per model, registered on the root module as `homotopy_lambda` (a buffer, so it is
in state_dict, checkpoints and moves with `.to(device)`).  Homotopy points (activations, skips, Solo
Connection) keep a *non-registered* reference to it, so the buffer appears once in state_dict.
λ = 1 is the standard network; continuation drivers move λ from l_init to 1.
"""
from __future__ import annotations

import torch
from torch import nn

ATTR = "homotopy_lambda"


class LambdaState(nn.Module):
    def __init__(self, value: float = 1.0):
        super().__init__()
        self.register_buffer("value", torch.tensor(float(value)))

    def get(self) -> float:
        return float(self.value.detach())

    def set(self, value: float) -> None:
        with torch.no_grad():
            self.value.fill_(float(value))

    # device-side accessors: no host transfer (use these in per-step code; get()/set() read/write floats)
    def tensor(self) -> torch.Tensor:
        """λ as a detached 0-dim tensor on the buffer's device (a view: it follows later in-place sets)."""
        return self.value.detach()

    def set_tensor(self, value: torch.Tensor, low: float = 0.0, high: float = 1.0) -> None:
        """λ ← clamp(value, low, high), computed on the device (no host read)."""
        with torch.no_grad():
            self.value.copy_(torch.clamp(value.detach(), low, high))

    def extra_repr(self) -> str:
        return f"value={self.get():.4g}"


class HostFlag:
    """Device booleans that the host reads without waiting for the device: `post(flags)` copies them into host
    memory (pinned, non_blocking on CUDA) and `read()` gives them once that copy has finished (None before, or
    when nothing was posted).  On the CPU the copy has finished when post() returns.  The host reads its own
    memory (a numpy view of the pinned buffer), never a device tensor, so it never blocks on the device;
    `read(wait=True)` is the exception: it waits for the copy (one device sync on CUDA).
    `size` = 0: one flag, read as a bool; `size` = n: n flags, read as a tuple of n bools."""

    def __init__(self, device, size: int = 0):
        self.lags = torch.device(device).type == "cuda"      # can the host see the flag later than the device set it?
        self.size = size
        self.host = torch.zeros((size,) if size else (), dtype=torch.bool, pin_memory=self.lags)
        self._memory = self.host.numpy()
        self.event = None
        self.pending = False

    def post(self, flag: torch.Tensor) -> None:
        self.host.copy_(flag, non_blocking=self.lags)
        if self.lags:
            self.event = torch.cuda.Event()
            self.event.record()
        self.pending = True

    def read(self, wait: bool = False):
        if self.pending and wait and self.event is not None:
            self.event.synchronize()
        if not self.pending or (self.event is not None and not self.event.query()):
            return None
        self.pending = False
        return tuple(bool(x) for x in self._memory) if self.size else bool(self._memory)


class DelayedFlags:
    """A channel of device flags that the host learns a fixed number of steps after they were set, the same on every
    device: `post(flags, tag)` once per step returns the (tag, flags) posted `delay` posts earlier (none in the
    first `delay` steps), reading them with `HostFlag.read(wait=True)`: on CUDA the device finished that step long
    ago, so the wait is one in name; on the CPU the copy is done when post() returns.  A ring of delay + 1 flags."""

    def __init__(self, device, size: int, delay: int):
        self.delay = delay
        self.ring = [HostFlag(device, size) for _ in range(delay + 1)]
        self.posted: list = []          # (tag, flag) not yet read, oldest first
        self.next = 0

    def post(self, flags: torch.Tensor, tag) -> list:
        slot = self.ring[self.next]     # the oldest: read by the previous post
        self.next = (self.next + 1) % len(self.ring)
        slot.post(flags)
        self.posted.append((tag, slot))
        n = max(len(self.posted) - self.delay, 0)
        due, self.posted = self.posted[:n], self.posted[n:]
        return [(t, flag.read(wait=True)) for t, flag in due]


class LambdaRef:
    """Mixin for homotopy points: holds λ without registering it as a submodule."""

    def _bind_lambda(self, lam: LambdaState) -> None:
        object.__setattr__(self, "_lam_ref", (lam,))

    @property
    def lam(self) -> torch.Tensor:
        return self._lam_ref[0].value


def attach_lambda(model: nn.Module, lam: LambdaState) -> nn.Module:
    """Register `lam` on the root module (idempotent for the same object)."""
    existing = getattr(model, ATTR, None)
    if existing is not None and existing is not lam:
        raise ValueError("model already has a different homotopy λ")
    setattr(model, ATTR, lam)
    return model


def find_lambda(model: nn.Module) -> LambdaState | None:
    lam = getattr(model, ATTR, None)
    if isinstance(lam, LambdaState):
        return lam
    for m in model.modules():  # wrapped models (peft, DDP) keep λ on an inner module
        if isinstance(m, LambdaState):
            return m
    return None


def get_lambda(model: nn.Module) -> float | None:
    lam = find_lambda(model)
    return None if lam is None else lam.get()


def set_lambda(model: nn.Module, value: float) -> None:
    lam = find_lambda(model)
    if lam is None:
        raise ValueError("model has no homotopy λ (build it with homotopy=true)")
    lam.set(value)
