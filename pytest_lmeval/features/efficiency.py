"""What each request cost this run: measurements of the run on this machine (HELM's efficiency
figures, sec. 4.9), not metrics of the model.

The engine times each backend call; a call answers many requests in batches, so its time is
divided over the requests it answered in proportion to their work: their tokens (the prompt
and continuation, plus the generated text for generation), counted with the backend's
tokenizer where it has one (`tok_encode`), else their characters. A request answered from the
cache cost nothing this run and is counted as cached.

Time to first token (TTFT), for generation where the backend can tell: the wall-clock seconds
from the start of the batch step that prefilled the request's row (the pass in which it joined
the running batch; a shared few-shot prefix computed for it in that pass included) to its first
generated token on the host. It is a latency, not a share: the rows prefilled together each
waited the whole prefill, so with many rows per batch it can exceed the time per request, which
divides the batch's work over its rows. A backend tells it by holding `first_token_seconds`, a
mapping from each generation request of its last call to those seconds (the HF backend does,
for its own decoder and for transformers' `generate`); the others (an API without streaming,
vLLM offline, the dummy) report none, and a task's summary says "not reported by this backend"
rather than a zero.

A document's record carries its requests' figures; a task's (results.json `efficiency`, the
report's latency distribution) sums and summarises them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pytest

from ..core.requests import Request
from ..engine.costs import Cost

if TYPE_CHECKING:
    from ..engine.answering import EngineStats
    from ..run.result import RunResult
    from ..tasks.benchmark import Doc

NOTE = "measurements of this run on this machine (batched work divided over its requests), not metrics of the model"
KEY = "efficiency"  # the per-document record's key
TTFT_NOTE = (
    "time to first token: seconds from the start of the batch step that prefilled the request's row "
    "(when it joined the batch) to its first generated token"
)
NOT_REPORTED = "not reported by this backend"
NONE_COMPUTED = "no generation request computed this run (all from the cache)"


def of_document(requests: Iterable[Request], costs: Mapping[Request, Cost]) -> dict[str, Any]:
    """A document's figures: per request its seconds (None: from the cache), and the sums; for
    generation, per request its time to first token (None: from the cache, or not told)."""
    requests = list(requests)
    per = [costs.get(r) for r in requests]
    done = [c for c in per if c is not None]
    out: dict[str, Any] = {
        "request_seconds": [round(c.seconds, 6) if c is not None else None for c in per],
        "seconds": round(sum(c.seconds for c in done), 6),
        "cached_requests": len(per) - len(done),
    }
    if any(r.kind == "generate_until" for r in requests):
        out["first_token_seconds"] = [
            round(c.first_token_seconds, 6) if c is not None and c.first_token_seconds is not None else None
            for c in per
        ]
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


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": sum(values) / len(values),
        "median": _quantile(values, 0.5),
        "p90": _quantile(values, 0.9),
        "max": max(values),
    }


def _first_token(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """A generation task's time to first token: its distribution over the requests whose
    backend told it, or None with why (never a zero)."""
    gen = [r for r in recs if "first_token_seconds" in r]
    if not gen:
        return {}
    values = [s for r in gen for s in r["first_token_seconds"] if s is not None]
    if values:
        return {"first_token_seconds": _stats(values), "first_token_note": TTFT_NOTE}
    computed = any(s is not None for r in gen for s in r["request_seconds"])
    return {"first_token_seconds": None, "first_token_note": NOT_REPORTED if computed else NONE_COMPUTED}


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
        out["seconds_per_request"] = _stats(seconds)
    out.update(_first_token(recs))
    computed = [r for r in recs if r["cached_requests"] < len(r["request_seconds"])]
    if computed and all("input_tokens" in r for r in computed):  # all from the cache: no tokens counted
        tokens_in = sum(r.get("input_tokens", 0) for r in recs)
        tokens_out = sum(r.get("generated_tokens", 0) for r in recs)
        out["input_tokens"] = tokens_in
        if any("generated_tokens" in r for r in recs):
            out["generated_tokens"] = tokens_out
        if out["seconds"]:
            out["tokens_per_second"] = (tokens_in + tokens_out) / out["seconds"]
    return out


class Efficiency:
    """What this process's computed requests cost (filled as the engine answers), under its own
    stash key; each scored document's record carries its requests' share, and the controller
    summarises them per task."""

    stash_key = pytest.StashKey["Efficiency"]()

    def __init__(self) -> None:
        self.costs: dict[Request, Cost] = {}

    def pytest_lmeval_answered(self, stats: EngineStats) -> None:
        self.costs.update(stats.costs)

    def pytest_lmeval_document_record(self, doc: Doc, record: dict[str, Any]) -> None:
        record[KEY] = of_document(doc.work.requests, self.costs)

    def pytest_lmeval_conclude(self, result: RunResult) -> None:
        figures = {}
        for name in result.results.task_names:
            got = summary(r for r in result.records + result.perturbed if r["task"] == name)
            if got is not None:
                figures[name] = got
        if figures:
            result.sections["efficiency"] = figures
            result.lines += terminal_lines(figures)


MAX_TASK_LINES = 8  # more tasks than this (MMLU's 57 subjects): one line for them all


def terminal_lines(figures: dict[str, dict[str, Any]]) -> list[str]:
    """One line per task that computed requests: seconds, per-request latency, token rate; for
    a run of many tasks one line over all of them (every task's figures are in results.json)."""
    if len(figures) > MAX_TASK_LINES:
        computed = [e for e in figures.values() if e.get("seconds_per_request")]
        if not computed:
            return []
        done = sum(e["computed_requests"] for e in computed)
        asked = sum(e["requests"] for e in figures.values())
        seconds = sum(e["seconds"] for e in computed)
        return [
            f"lmeval efficiency ({NOTE}): {len(figures)} tasks: {done} of {asked} requests computed in "
            f"{seconds:.2f}s; each task's figures in results.json (efficiency)"
        ]
    lines = []
    for name, e in figures.items():
        per = e.get("seconds_per_request")
        if not per:
            continue
        rate = f", {e['tokens_per_second']:.0f} tokens/s" if e.get("tokens_per_second") else ""
        first = ""
        if "first_token_seconds" in e:  # generation: its time to first token, or why there is none
            ttft = e["first_token_seconds"]
            first = (
                f"; time to first token median {ttft['median']:.4f}s, p90 {ttft['p90']:.4f}s"
                if ttft
                else f"; time to first token {e['first_token_note']}"
            )
        lines.append(
            f"lmeval efficiency: {name}: {e['computed_requests']} of {e['requests']} requests computed in "
            f"{e['seconds']:.2f}s, per request median {per['median']:.4f}s, p90 {per['p90']:.4f}s{rate}{first}"
        )
    if lines:
        lines.insert(0, f"lmeval efficiency ({NOTE}):")
    return lines
