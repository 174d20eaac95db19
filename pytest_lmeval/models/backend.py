"""The backend interface: what the engine asks of any model, and how a backend gives up."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from ..core.requests import Request
from .spec import ModelSpec

Progress = Callable[[int], None]


def answered(progress: Progress, pairs: Iterable[tuple[Request, Any]]) -> None:
    """Hand the engine the answers a backend just finished (a batch, a server's reply), so it
    commits them at once and an interruption loses only the batch in flight. A progress
    callback without `answered` (a test's lambda) takes only the count."""
    take = getattr(progress, "answered", None)
    if take is not None:
        take(list(pairs))


class RequestFailed(Exception):
    """A backend gave up on a request (a server kept failing, or cannot answer this kind).

    The run stops with `reason`, naming the documents that asked for `request`. `completed`
    holds the answers the backend finished before giving up, so the engine caches them and a
    rerun computes only the rest.
    """

    def __init__(self, request: Request, reason: str, completed: Iterable[tuple[Request, Any]] = ()) -> None:
        super().__init__(reason)
        self.request = request
        self.reason = reason
        self.completed = list(completed)


class Backend(Protocol):
    """One method per request kind; each returns one response per request, in order."""

    spec: ModelSpec

    def loglikelihood(self, requests: Sequence[Request], progress: Progress) -> list[tuple[float, bool]]: ...

    # Optional: loglikelihood_rolling(requests, progress) -> list[float] and
    # generate_until(requests, progress) -> list[str]; the engine names a missing one.
    # Optional: token_counts() -> {"tokens": ..., "forward_tokens": ...} for the run's figures.
    # Optional: close(): release what the model holds outside this process (vLLM's engine
    # processes); called once when the session ends, interrupted or not.

    def info(self) -> dict[str, Any]:
        """Facts about the loaded model for results.json (dtype, device, max length...)."""
        ...


def close_backend(backend: Any) -> None:
    """The backend's optional close(), if it has one."""
    close = getattr(backend, "close", None)
    if callable(close):
        close()
