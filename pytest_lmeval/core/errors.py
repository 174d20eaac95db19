"""The one error type users see for bad input: a single line that says what and where."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import pytest


class LmevalError(pytest.UsageError):
    """Bad input (task, model, YAML, data, template). pytest prints it as one ERROR line."""


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' for a misspelt name, or '' when nothing is close."""
    found = difflib.get_close_matches(name, sorted(set(candidates)), n=n, cutoff=0.6)
    return f" (did you mean: {', '.join(found)}?)" if found else ""


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGTERM from a CI runner's cancel or timeout, SIGHUP from a closed
    terminal) raised where Ctrl-C would be, so the run stops the same way; `signal_name` says
    which, for the terminal line and the exit code."""

    def __init__(self, signal_name: str, signal_number: int) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.signal_number = signal_number


def interruption_name(exc: BaseException) -> str:
    """How the user stopped the run, in the words the terminal uses."""
    return exc.signal_name if isinstance(exc, Interrupted) else "Ctrl-C"


class NotScored(pytest.fail.Exception):
    """A document whose answers cannot be scored: its item fails with the reason alone (no
    traceback: the fault is the model's or the server's, not the test's)."""

    __module__ = "builtins"  # shown as `NotScored: <reason>`, as pytest shows its own outcomes

    def __init__(self, reason: str) -> None:
        super().__init__(reason, pytrace=False)
        self.reason = reason
