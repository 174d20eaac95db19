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
