"""SIGINT/SIGTERM in every phase of a run: one scope around the whole run (`run()` enters it).

- In the training loop (`deferred()`) the first signal only asks: the current step finishes, the records are
  flushed and a checkpoint is saved at that step (a data-parallel run agrees on the step at its next flush).
- Everywhere else (building, the final evaluation or decoding, writing the outputs) the first signal raises
  `Interrupted` at once; the run then flushes its records, saves a checkpoint when it is past its first step
  and has none at this step, and writes summary.json with status `interrupted`.
- A second signal raises `Interrupted(second=True)`: no new checkpoint (the last one on disk stands, every file
  is written by temp file + rename), the summary is still written.
- `shielded()` (flushing records, writing summary.json) holds signals off: they are remembered, not raised;
  one that no code acted on is raised when the scope ends (after summary.json is written), so the process
  still stops (exit 128 + signal) and a sweep does not start its next job.
- SIGHUP (a closed terminal or ssh session) is handled like SIGTERM.

Outside the main thread (joblib workers) Python cannot install handlers; the run then keeps the default
behaviour.
"""
from __future__ import annotations

import contextlib
import signal


class Interrupted(KeyboardInterrupt):
    """A signal stopped the run; `signum` says which, `second` whether it was the second one."""

    def __init__(self, signum: int, second: bool = False):
        super().__init__(f"{'second ' if second else ''}signal {signum}")
        self.signum, self.second = signum, second


class StopOnSignal:
    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)     # SIGHUP: the terminal or ssh session closed

    def __init__(self):
        self.signum: int | None = None       # the first signal received
        self.count = 0
        self.acted = False                   # a signal was raised, or the loop stopped for it
        self._defer = 0
        self._shield = 0
        self._old: dict = {}

    def _handler(self, signum, _frame):
        self.count += 1
        if self.signum is None:
            self.signum = signum
        if self._shield or (self.count == 1 and self._defer):
            return
        self.acted = True
        raise Interrupted(signum, second=self.count > 1)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @contextlib.contextmanager
    def deferred(self):
        """The first signal only sets `requested` (the training loop stops at the end of its step)."""
        self._defer += 1
        try:
            yield self
        finally:
            self._defer -= 1

    @contextlib.contextmanager
    def shielded(self):
        """No signal interrupts what runs inside (short writes that must not be cut)."""
        self._shield += 1
        try:
            yield self
        finally:
            self._shield -= 1

    def __enter__(self) -> "StopOnSignal":
        with contextlib.suppress(ValueError):      # not in the main thread
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        for sig, h in self._old.items():
            signal.signal(sig, h)
        if self.signum is not None and not self.acted and exc_type is None:
            self.acted = True                # held off by a shield to the end: the caller still has to stop
            raise Interrupted(self.signum)
