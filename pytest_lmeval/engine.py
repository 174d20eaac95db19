"""Gathers the selected documents' requests, dedupes them, and runs the backend once.

Items never call the model: the engine answers every request of the run (or of this xdist
worker's shard) in one pass, so the backend can sort and batch across tasks, and each item then
reads its answers from the returned mapping. With a cache, answers already known are taken
from it, the model is loaded only if something is left to compute, and answers are committed
chunk by chunk as they arrive, so an interrupted run loses at most the chunk in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .cache import ResponseCache
from .models.base import Backend, RequestFailed
from .requests import KINDS, Request, Response

ProgressFactory = Callable[[str, int], Callable[[int], None]]
CHUNK = 512  # requests per backend call when caching: the unit of loss on a crash


@dataclass
class EngineStats:
    requested: int = 0
    unique: int = 0
    from_cache: int = 0
    computed: int = 0
    seconds: float = 0.0
    per_kind: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)  # the backend's token_counts(), if any

    def to_json(self) -> dict[str, object]:
        return {
            "requests": self.requested,
            "unique_requests": self.unique,
            "from_cache": self.from_cache,
            "computed": self.computed,
            "model_seconds": round(self.seconds, 3),
            "computed_per_kind": self.per_kind,
            **self.tokens,
        }


def run_requests(
    get_backend: Callable[[], Backend],
    requests: Iterable[Request],
    progress: ProgressFactory,
    cache: ResponseCache | None = None,
    refresh: bool = False,
) -> tuple[dict[Request, Response], EngineStats]:
    stats = EngineStats()
    unique: dict[Request, None] = {}
    for req in requests:
        stats.requested += 1
        unique.setdefault(req, None)
    stats.unique = len(unique)
    answers: dict[Request, Response] = {}
    if cache is not None and not refresh:
        answers.update(cache.lookup(unique))
    stats.from_cache = len(answers)
    todo = [r for r in unique if r not in answers]
    stats.computed = len(todo)
    if not todo:
        return answers, stats
    backend = get_backend()
    started = time.perf_counter()
    for kind in KINDS:
        # Sorted by prompt so requests sharing a prefix stay in one chunk.
        of_kind = sorted((r for r in todo if r.kind == kind), key=lambda r: str(r.args[0]))
        if not of_kind:
            continue
        method = getattr(backend, kind, None)
        if method is None:
            raise RuntimeError(f"backend {backend.spec.label} cannot answer {kind} requests")
        stats.per_kind[kind] = len(of_kind)
        advance = progress(kind, len(of_kind))
        size = CHUNK if cache is not None else len(of_kind)
        for start in range(0, len(of_kind), size):
            chunk = of_kind[start : start + size]
            try:
                responses = method(chunk, advance)
            except RequestFailed as exc:  # keep what the backend finished before giving up
                if cache is not None and exc.completed:
                    cache.store(exc.completed)
                raise
            if len(responses) != len(chunk):
                raise RuntimeError(
                    f"backend {backend.spec.label} returned {len(responses)} answers for {len(chunk)} {kind} requests"
                )
            pairs = list(zip(chunk, responses, strict=True))
            answers.update(pairs)
            if cache is not None:
                cache.store(pairs)
    stats.seconds = time.perf_counter() - started
    counts = getattr(backend, "token_counts", None)
    if counts is not None:
        stats.tokens = counts()
    return answers, stats
