"""What each computed request cost: the engine times every backend call and divides its time
over the requests it answered, in proportion to their work (features/efficiency.py turns these
into a task's efficiency figures).

Work is tokens (prompt and continuation, plus the generated text for generation) counted with
the backend's tokenizer where it has one (`tok_encode`), else characters. A backend that can
tell each generation request's time to first token holds them in `first_token_seconds`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.requests import Request


@dataclass(frozen=True)
class Cost:
    seconds: float
    input_tokens: int | None  # prompt and continuation; None when the backend has no tokenizer
    generated_tokens: int | None  # generation only
    first_token_seconds: float | None = None  # generation, where the backend tells it (TTFT)


def _tokens(count: Callable[[str], int] | None, text: str) -> int | None:
    return count(text) if count is not None and text else (0 if count is not None else None)


def share(backend: Any, requests: Sequence[Request], responses: Sequence[Any], seconds: float) -> dict[Request, Cost]:
    """One backend call's time divided over its requests by their work."""
    encode = getattr(backend, "tok_encode", None)
    ttft = getattr(backend, "first_token_seconds", None) or {}
    count = (lambda text: len(encode(text))) if callable(encode) else None
    sizes = []
    for req, resp in zip(requests, responses, strict=True):
        text_in = "".join(a for a in req.args if isinstance(a, str))
        text_out = resp if req.kind == "generate_until" and isinstance(resp, str) else ""
        tin, tout = _tokens(count, text_in), _tokens(count, text_out) if req.kind == "generate_until" else None
        work = (tin or 0) + (tout or 0) if count is not None else len(text_in) + len(text_out)
        sizes.append((tin, tout, max(work, 1)))
    total = sum(w for _, _, w in sizes)
    return {
        req: Cost(seconds * w / total, tin, tout, ttft.get(req) if req.kind == "generate_until" else None)
        for req, (tin, tout, w) in zip(requests, sizes, strict=True)
    }
