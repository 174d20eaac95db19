"""What each request cost this run: measurements of the run on this machine (HELM's efficiency
figures, sec. 4.9), not metrics of the model.

The engine times each backend call; a call answers many requests in batches, so its time is
divided over the requests it answered in proportion to their work: their tokens (the prompt
and continuation, plus the generated text for generation), counted with the backend's
tokenizer where it has one (`tok_encode`), else their characters. A request answered from the
cache cost nothing this run and is counted as cached. Time to the first token is not reported:
no backend here tells it apart from the rest of the generation.

A document's record carries its requests' figures; a task's (results.json `efficiency`, the
report's latency distribution) sums and summarises them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .requests import Request

NOTE = "measurements of this run on this machine (batched work divided over its requests), not metrics of the model"
KEY = "efficiency"  # the per-document record's key


@dataclass(frozen=True)
class Cost:
    seconds: float
    input_tokens: int | None  # prompt and continuation; None when the backend has no tokenizer
    generated_tokens: int | None  # generation only


def _tokens(count: Callable[[str], int] | None, text: str) -> int | None:
    return count(text) if count is not None and text else (0 if count is not None else None)


def share(backend: Any, requests: Sequence[Request], responses: Sequence[Any], seconds: float) -> dict[Request, Cost]:
    """One backend call's time divided over its requests by their work."""
    encode = getattr(backend, "tok_encode", None)
    count = (lambda text: len(encode(text))) if callable(encode) else None
    sizes = []
    for req, resp in zip(requests, responses, strict=True):
        text_in = "".join(a for a in req.args if isinstance(a, str))
        text_out = resp if req.kind == "generate_until" and isinstance(resp, str) else ""
        tin, tout = _tokens(count, text_in), _tokens(count, text_out) if req.kind == "generate_until" else None
        work = (tin or 0) + (tout or 0) if count is not None else len(text_in) + len(text_out)
        sizes.append((tin, tout, max(work, 1)))
    total = sum(w for _, _, w in sizes)
    return {req: Cost(seconds * w / total, tin, tout) for req, (tin, tout, w) in zip(requests, sizes, strict=True)}


def of_document(requests: Iterable[Request], costs: Mapping[Request, Cost]) -> dict[str, Any]:
    """A document's figures: per request its seconds (None: from the cache), and the sums."""
    per = [costs.get(r) for r in requests]
    done = [c for c in per if c is not None]
    out: dict[str, Any] = {
        "request_seconds": [round(c.seconds, 6) if c is not None else None for c in per],
        "seconds": round(sum(c.seconds for c in done), 6),
        "cached_requests": len(per) - len(done),
    }
    if done and all(c.input_tokens is not None for c in done):
        out["input_tokens"] = sum(c.input_tokens or 0 for c in done)
        if any(c.generated_tokens is not None for c in done):
            out["generated_tokens"] = sum(c.generated_tokens or 0 for c in done)
    return out


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(records: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """A task's figures from its documents' records."""
    recs = [r[KEY] for r in records if KEY in r]
    if not recs:
        return None
    seconds = [s for r in recs for s in r["request_seconds"] if s is not None]
    out: dict[str, Any] = {
        "note": NOTE,
        "documents": len(recs),
        "requests": sum(len(r["request_seconds"]) for r in recs),
        "computed_requests": len(seconds),
        "seconds": round(sum(seconds), 6),
    }
    if seconds:
        out["seconds_per_request"] = {
            "mean": sum(seconds) / len(seconds),
            "median": _quantile(seconds, 0.5),
            "p90": _quantile(seconds, 0.9),
            "max": max(seconds),
        }
    if all("input_tokens" in r for r in recs if r["seconds"]):
        tokens_in = sum(r.get("input_tokens", 0) for r in recs)
        tokens_out = sum(r.get("generated_tokens", 0) for r in recs)
        out["input_tokens"] = tokens_in
        if any("generated_tokens" in r for r in recs):
            out["generated_tokens"] = tokens_out
        if out["seconds"]:
            out["tokens_per_second"] = (tokens_in + tokens_out) / out["seconds"]
    return out
