"""SIGINT/SIGTERM during training: finish the current step, save a checkpoint, status "interrupted".

A second signal aborts at once (KeyboardInterrupt).  Outside the main thread (joblib workers) Python
cannot install handlers; the run then keeps the default behaviour.
"""
from __future__ import annotations

import contextlib
import signal


class StopOnSignal:
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._old: dict = {}

    def _handler(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt(f"second signal {signum}")
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> "StopOnSignal":
        with contextlib.suppress(ValueError):      # not in the main thread
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, h in self._old.items():
            signal.signal(sig, h)
