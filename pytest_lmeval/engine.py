"""Gathers the selected documents' requests, dedupes them, and runs the backend once.

Items never call the model: the engine answers every request of the run (or of this xdist
worker's shard) in one pass, so the backend can sort and batch across tasks, and each item then
reads its answers from the returned mapping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .models.base import Backend
from .requests import KINDS, Request, Response

ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass
class EngineStats:
    requested: int = 0
    unique: int = 0
    seconds: float = 0.0
    per_kind: dict[str, int] = field(default_factory=dict)


def run_requests(
    backend: Backend, requests: Iterable[Request], progress: ProgressFactory
) -> tuple[dict[Request, Response], EngineStats]:
    stats = EngineStats()
    unique: dict[Request, None] = {}
    for req in requests:
        stats.requested += 1
        unique.setdefault(req, None)
    stats.unique = len(unique)
    answers: dict[Request, Response] = {}
    started = time.perf_counter()
    for kind in KINDS:
        todo = [r for r in unique if r.kind == kind]
        if not todo:
            continue
        method = getattr(backend, kind, None)
        if method is None:
            raise RuntimeError(f"backend {backend.spec.label} cannot answer {kind} requests")
        stats.per_kind[kind] = len(todo)
        responses = method(todo, progress(kind, len(todo)))
        if len(responses) != len(todo):
            raise RuntimeError(
                f"backend {backend.spec.label} returned {len(responses)} answers for {len(todo)} {kind} requests"
            )
        answers.update(zip(todo, responses, strict=True))
    stats.seconds = time.perf_counter() - started
    return answers, stats
