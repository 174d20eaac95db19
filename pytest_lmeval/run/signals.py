"""SIGTERM and SIGHUP stop a run as Ctrl-C does.

CI runners cancel and time out jobs with SIGTERM (GitHub Actions, GitLab, Kubernetes), a closed
terminal sends SIGHUP; Python's default for both ends the process with no summary and no
results. Here the first one raises `Interrupted` (a KeyboardInterrupt) where Ctrl-C would raise
its own: the engine keeps every answer finished, the documents answered are scored, the
results are written marked partial, and the exit code says which signal (128 + its number). A
second signal ends the process at once; the cache loses nothing by it (each batch's answers
were committed whole)."""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

from ..core.errors import Interrupted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class StopSignals:
    """Installed for the session (main thread only: Python delivers signals there)."""

    def __init__(self) -> None:
        self.received: Interrupted | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:  # a second signal: end now
            os._exit(128 + signum)
        self.received = Interrupted(signal.Signals(signum).name, signum)
        raise self.received

    @property
    def exit_code(self) -> int | None:
        """128 + the signal's number, as a shell reports a process a signal ended."""
        return 128 + self.received.signal_number if self.received is not None else None
