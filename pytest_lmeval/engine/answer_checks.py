"""Whether a document's answers can be scored, checked where answers meet documents.

Two things make an answer unusable, and both must show as an unscored document with its
reason rather than as a score:

- the backend gave up on a request (a server that stayed down, out of memory at batch size 1):
  the engine puts an `Unanswered` in the request's place. It is never cached, so a rerun
  computes it again. A request the run never reached, because the backend gave up on another
  one first, is `Unanswered(not_run=True)`: its document is skipped, not failed;
- a log-likelihood that is NaN or infinite (a broken checkpoint, an fp16 overflow): averaging
  it in would turn the task's mean into NaN, or hide it behind `acc` (argmax ignores NaN
  rows in some orders and not in others).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from ..core.errors import NotScored
from ..core.requests import Request


@dataclass(frozen=True)
class Unanswered:
    """Stands in the engine's answers for a request it has no answer to."""

    reason: str
    not_run: bool = False  # never sent: the run stopped at another request first


def non_finite(req: Request, answer: Any) -> float | None:
    """The offending value when a log-likelihood answer is NaN or infinite, else None."""
    if req.kind == "loglikelihood" and isinstance(answer, (tuple, list)) and answer:
        value = answer[0]
    elif req.kind == "loglikelihood_rolling" and not isinstance(answer, (tuple, list, str)):
        value = answer
    else:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isfinite(value) else value


def unscorable(requests: Iterable[Request], answers: Mapping[Request, Any]) -> Unanswered | None:
    """Why a document's answers cannot be scored (an `Unanswered`), or None when they can.
    Requests missing from `answers` are left to the caller (they may still be computed)."""
    requests = list(requests)
    missing = [a for a in (answers.get(r) for r in requests) if isinstance(a, Unanswered)]
    if missing:  # a request that failed says more than one the run never reached
        return min(missing, key=lambda a: a.not_run)
    for i, req in enumerate(requests):
        answer = answers.get(req)
        bad = non_finite(req, answer)
        if bad is not None:
            return Unanswered(
                f"non-finite log-likelihood ({bad}) in request {i + 1} of {len(requests)} ({req.kind}): "
                "the model's outputs are NaN or infinite, so the document is left out of every score"
            )
    return None


def check_answers(requests: Iterable[Request], answers: Mapping[Request, Any]) -> None:
    """Before a document is scored: skip it when it was not run, fail it (NotScored) when its
    answers cannot be scored."""
    why = unscorable(requests, answers)
    if why is not None and why.not_run:
        pytest.skip(f"not run: {why.reason}")
    if why is not None:
        raise NotScored(why.reason)
