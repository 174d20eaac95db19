"""Gathers the selected documents' requests, dedupes them, and runs the backend once.

Items never call the model: the engine answers every request of the run (or of this xdist
worker's shard) in one pass, so the backend can sort and batch across tasks, and each item then
reads its answers from the returned mapping. With a cache, answers already known are taken
from it, the model is loaded only if something is left to compute, and answers are committed
as each batch ends (backends hand them over as they finish; one that cannot, at the end of
each chunk of requests), so an interrupted run loses at most the batch in flight.

A backend that gives up on a request for good (RequestFailed: a server that stays down; or out
of memory with no smaller batch left) does not end the run: its finished answers are cached,
the request gets an `Unanswered` with the reason, and the engine either stops there (every
request not reached gets `Unanswered(not_run=True)`) or, with `--ignore-errors`, goes on with
the rest. The plugin chooses by the `FailurePolicy` it sets around the call.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

from ..core.errors import interruption_name
from ..core.requests import KINDS, Request, Response
from ..models.backend import Backend, RequestFailed
from .answer_checks import Unanswered
from .cache import ResponseCache
from .costs import Cost, share

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
    failed: int = 0  # requests the backend gave up on
    not_run: int = 0  # requests never sent: the run stopped at a failed one first
    costs: dict[Request, Cost] = field(default_factory=dict)  # per computed request (not in to_json)
    # requests whose input the backend cut to the model's length: (tokens, kept) (not in to_json)
    truncated: dict[Request, tuple[int, int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "requests": self.requested,
            "unique_requests": self.unique,
            "from_cache": self.from_cache,
            "computed": self.computed,
            "model_seconds": round(self.seconds, 3),
            "computed_per_kind": self.per_kind,
            **self.tokens,
        }
        if self.failed or self.not_run:
            out.update(failed_requests=self.failed, not_run_requests=self.not_run)
        return out


@dataclass
class FailurePolicy:
    """What the engine does when the backend gives up on a request for good."""

    ignore_errors: bool = False  # go on with the other requests instead of stopping
    describe: Callable[[Request], str] = lambda req: "a document"  # who asked, for messages
    stopped: tuple[Request, str] | None = None  # set by the engine: where it stopped, and why
    interrupted: str | None = None  # set by the engine: stopped by Ctrl-C or a signal (its name)
    repeats: bool = False  # set by the engine: the fault it stopped at would happen again (no memory)


_POLICY: ContextVar[FailurePolicy | None] = ContextVar("lmeval_failure_policy", default=None)


@contextlib.contextmanager
def failure_policy(policy: FailurePolicy) -> Generator[FailurePolicy, None, None]:
    """The policy for every `run_requests` call inside the block (without one, the engine
    stops at the first request the backend gives up on)."""
    token = _POLICY.set(policy)
    try:
        yield policy
    finally:
        _POLICY.reset(token)


def _is_oom(exc: BaseException) -> bool:
    # by name: the engine never imports torch (the dummy and API backends run without it)
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _given_up(
    exc: Exception, pending: Sequence[Request]
) -> tuple[list[Request], str, list[tuple[Request, Response]]] | None:
    """(the requests given up on, why, the answers finished first) when `exc` means the backend
    cannot answer them; None for anything else (a bug: it propagates)."""
    if isinstance(exc, RequestFailed):
        failed = exc.request if exc.request in pending else pending[0]
        return [failed], exc.reason, list(exc.completed)
    if _is_oom(exc):  # the hf backend re-raises it once no smaller batch is left
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return list(pending), f"out of memory with no smaller batch left ({first})", []
    return None


class _Committing:
    """The progress callback a backend gets: counts go to the progress bar; answers a backend
    hands over as each batch ends (`models.backend.answered`) are kept and committed to the
    cache at once, so an interruption loses only the batch in flight."""

    def __init__(
        self,
        advance: Callable[[int], None],
        answers: dict[Request, Response],
        cache: ResponseCache | None,
        stated: Callable[[Request], object] | None,
    ) -> None:
        self.advance = advance
        self.answers = answers
        self.cache = cache
        self.stated = stated
        self.committed: set[Request] = set()

    def commit(self, pairs: list[tuple[Request, Response]]) -> None:
        """Store what is not stored yet (an API answer's stated identity is taken once)."""
        fresh = [(r, a) for r, a in pairs if r not in self.committed]
        if self.cache is not None and fresh:
            self.cache.store(fresh, self.stated)
        self.committed.update(r for r, _ in fresh)

    def __call__(self, n: int) -> None:
        self.advance(n)

    def answered(self, pairs: list[tuple[Request, Response]]) -> None:
        self.answers.update(pairs)
        self.commit(pairs)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _isolate(
    method: Callable[..., list[Response]],
    pending: list[Request],
    advance: _Committing,
    exc: Exception,
    stats: EngineStats,
) -> list[Request]:
    """After an exception that would happen again (a bug, a request the model cannot take),
    find the requests that raise it by halving the unanswered ones, answer the others, and
    give each failing one an `Unanswered` with the exception's line: only the documents that
    asked for them fail. Returns what is left to ask (nothing)."""
    left = [r for r in pending if r not in advance.answers]
    if len(left) == 1:
        advance.answers[left[0]] = Unanswered(f"the model raised {_one_line(exc)}")
        stats.failed += 1
        return []
    half = len(left) // 2
    for part in (left[:half], left[half:]):
        try:
            responses = method(part, advance)
        except KeyboardInterrupt:
            raise
        except Exception as again:
            if _given_up(again, part) is not None:
                raise
            _isolate(method, part, advance, again, stats)
            continue
        pairs = list(zip(part, responses, strict=True))
        advance.answers.update(pairs)
        advance.commit(pairs)
    return []


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
    policy = _POLICY.get() or FailurePolicy()
    backend = get_backend()
    stated = getattr(backend, "take_stated", None)  # API backends: the model each server stated
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
        advance = _Committing(progress(kind, len(of_kind)), answers, cache, stated)
        size = CHUNK if cache is not None else len(of_kind)
        for start in range(0, len(of_kind), size):
            if policy.stopped is not None:
                break
            pending = of_kind[start : start + size]
            while pending:
                try:
                    called = time.perf_counter()
                    try:
                        responses = method(pending, advance)
                    except Exception as exc:
                        if _given_up(exc, pending) is not None:
                            raise
                        # a fault that would happen again: fail only the requests it hits
                        pending = _isolate(method, pending, advance, exc, stats)
                        continue
                except KeyboardInterrupt as exc:  # Ctrl-C or a stop signal: keep what is answered, stop
                    policy.interrupted = interruption_name(exc)
                    break
                except Exception as exc:
                    given_up = _given_up(exc, pending)
                    assert given_up is not None
                    failed, reason, completed = given_up
                    answers.update(completed)  # keep what the backend finished before giving up
                    advance.commit(completed)
                    if not policy.ignore_errors:  # the others were not answered either: not run
                        failed = failed[:1]
                    answers.update((r, Unanswered(reason)) for r in failed)
                    stats.failed += len(failed)
                    if not policy.ignore_errors:
                        policy.stopped = (failed[0], reason)
                        policy.repeats = _is_oom(exc)
                        break
                    pending = [r for r in pending if r not in answers]
                    continue
                if len(responses) != len(pending):
                    raise RuntimeError(
                        f"backend {backend.spec.label} returned {len(responses)} answers "
                        f"for {len(pending)} {kind} requests"
                    )
                pairs = list(zip(pending, responses, strict=True))
                stats.costs.update(share(backend, pending, responses, time.perf_counter() - called))
                stats.truncated.update(getattr(backend, "truncated", None) or {})
                answers.update(pairs)
                advance.commit(pairs)
                pending = []
            if policy.interrupted is not None:
                break
        if policy.stopped is not None or policy.interrupted is not None:
            break
    if policy.stopped is not None or policy.interrupted is not None:
        if policy.interrupted is not None:
            why = Unanswered(f"the run was interrupted ({policy.interrupted}) before it was answered", not_run=True)
        else:
            req, reason = policy.stopped  # type: ignore[misc]
            why = Unanswered(
                f"the run stopped at a {req.kind} request of {policy.describe(req)}: {reason}", not_run=True
            )
        left = [r for r in todo if r not in answers]
        answers.update((r, why) for r in left)
        stats.not_run = len(left)
    stats.computed = len(todo) - stats.failed - stats.not_run
    stats.seconds = time.perf_counter() - started
    counts = getattr(backend, "token_counts", None)
    if counts is not None:
        stats.tokens = counts()
    return answers, stats
