"""HTTP for the API backends: bounded concurrency over a pool of servers, retries, and failures
that say what happened.

Written on aiohttp rather than with a retry decorator because the policy needs three things
together: the server's Retry-After as the floor of the wait; a line between faults worth
retrying (429, 408, 5xx, timeouts, dropped connections, truncated or malformed bodies) and
answers that will not change (any other 4xx, a well-formed response of the wrong shape); and the
failing call identified in the final error, with every call that did finish handed back so its
answers are kept.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..spec import REDACTED, redact_urls

log = logging.getLogger("pytest_lmeval.api")

RETRY_STATUSES = {408, 409, 425, 429}  # and every 5xx
MAX_RETRY_AFTER = 300.0  # a server asking for longer than this is waited on this long
DOWN_FOR = 30.0  # seconds a server that refused or dropped a connection gets no requests


class CallError(Exception):
    """One HTTP call failed; `transient` ones are retried."""

    def __init__(self, reason: str, *, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.retry_after = retry_after


class UnusableResponse(ValueError):
    """Raised by a Call's parse for a well-formed response this client cannot use (a server that
    gives no log-probabilities): the message says what the server at the URL does, in full, and
    the call is not retried (the same server answers the same way)."""


class CallsFailed(Exception):
    """A call failed for good. `index` is the call, `done` maps every finished call's index to
    its parsed answers."""

    def __init__(self, index: int, reason: str, done: dict[int, Any]) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason
        self.done = done


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff: float = 1.0  # seconds before the first retry, doubled each time
    max_backoff: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (half to all of the step, so clients that failed
        together do not retry together); Retry-After, when the server sends one, is a floor."""
        step = min(self.max_backoff, self.backoff * 2**attempt)
        wait = random.uniform(step / 2, step)
        if retry_after is not None:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
        return wait


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (RFC 9110: delay-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class Call:
    """One HTTP request: a JSON body, and how to turn the JSON answer into results (raising
    KeyError/IndexError/TypeError/ValueError on a response of the wrong shape)."""

    payload: dict[str, Any]
    parse: Callable[[Any], Any]


class ApiClient:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        headers: dict[str, str],
        num_concurrent: int,
        timeout: float,
        policy: RetryPolicy,
        secrets: Sequence[str] = (),
        verify_certificate: bool = True,
    ) -> None:
        self.urls = list(urls)
        self.headers = headers
        self.num_concurrent = max(1, int(num_concurrent))
        self.timeout = float(timeout)
        self.policy = policy
        self.secrets = [s for s in secrets if s]
        self.verify_certificate = verify_certificate
        self._in_flight = dict.fromkeys(self.urls, 0)
        self._next = 0
        self._down: dict[str, float] = {}  # a server that refused a connection: skipped until then

    def run(self, calls: Sequence[Call], on_done: Callable[[int, Any], None]) -> list[Any]:
        """Every call's parsed answer, in order; `on_done(i, answer)` as call i finishes. Raises
        CallsFailed when a call fails for good (the others are cancelled)."""
        if not calls:
            return []
        return asyncio.run(self._run(list(calls), on_done))

    async def _run(self, calls: list[Call], on_done: Callable[[int, Any], None]) -> list[Any]:
        limit = asyncio.Semaphore(self.num_concurrent)
        connector = aiohttp.TCPConnector(limit=self.num_concurrent, ssl=self.verify_certificate)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        done: dict[int, Any] = {}
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def one(i: int) -> None:
                answer = await self._with_retries(session, limit, calls[i])
                on_done(i, answer)
                done[i] = answer

            tasks = {asyncio.ensure_future(one(i)): i for i in range(len(calls))}
            finished, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            failed = [t for t in finished if t.exception() is not None]
            if failed:
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                first = min(failed, key=lambda t: tasks[t])
                exc = first.exception()
                reason = exc.reason if isinstance(exc, CallError) else f"{type(exc).__name__}: {exc}"
                raise CallsFailed(tasks[first], self._redact(reason), dict(done))
        return [done[i] for i in range(len(calls))]

    async def _with_retries(self, session: aiohttp.ClientSession, limit: asyncio.Semaphore, call: Call) -> Any:
        attempts = self.policy.max_retries + 1
        for attempt in range(attempts):
            try:
                async with limit:  # a slot is held while a request is out, not while backing off
                    return await self._attempt(session, call)
            except CallError as exc:
                if not exc.transient:
                    raise
                if attempt + 1 == attempts:
                    raise CallError(f"{exc.reason} (gave up after {attempts} attempts)", transient=False) from None
                wait = self.policy.delay(attempt, exc.retry_after)
                log.warning("retrying in %.1fs (%d/%d): %s", wait, attempt + 1, attempts - 1, self._redact(exc.reason))
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    def _pick(self) -> str:
        """The least busy server of the pool that is up; ties go round-robin. A server that
        dropped or refused a connection is left out for DOWN_FOR seconds (a busy server that
        stopped would otherwise look the least busy and take every retry); with all of them
        down, the one back soonest."""
        now = time.monotonic()
        up = [u for u in self.urls if self._down.get(u, 0.0) <= now]
        if not up:
            return min(self.urls, key=lambda u: self._down[u])
        least = min(self._in_flight[u] for u in up)
        for k in range(len(self.urls)):
            url = self.urls[(self._next + k) % len(self.urls)]
            if url in up and self._in_flight[url] == least:
                self._next = (self._next + k + 1) % len(self.urls)
                return url
        return up[0]

    async def _attempt(self, session: aiohttp.ClientSession, call: Call) -> Any:
        url = self._pick()
        self._in_flight[url] += 1
        try:
            async with session.post(url, json=call.payload, headers=self.headers) as resp:
                text = await resp.text()
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except asyncio.TimeoutError:
            raise CallError(f"no answer from {url} within {self.timeout:g}s", transient=True) from None
        except aiohttp.ClientError as exc:
            if len(self.urls) > 1 and isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError)):
                self._down[url] = time.monotonic() + DOWN_FOR
            raise CallError(f"{type(exc).__name__} from {url}: {exc}", transient=True) from None
        finally:
            self._in_flight[url] -= 1
        if status >= 400:
            transient = status in RETRY_STATUSES or status >= 500
            message = f"HTTP {status} from {url}: {_error_text(text)}"
            raise CallError(self._redact(message), transient=transient, retry_after=retry_after)
        try:
            data = json.loads(text)
        except ValueError:
            raise CallError(f"malformed JSON from {url}: {text[:120]!r}", transient=True) from None
        try:
            return call.parse(data)
        except UnusableResponse as exc:
            raise CallError(self._redact(f"the server at {url} {exc}"), transient=False) from None
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise CallError(
                self._redact(f"unexpected response from {url} ({type(exc).__name__}: {exc}): {text[:300]}"),
                transient=False,
            ) from None

    def _redact(self, text: str) -> str:
        """A message as it may be shown: the key and the secrets of every URL in it replaced."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return redact_urls(text)


def _error_text(body: str) -> str:
    """The server's own error message where it sends OpenAI's {"error": {"message": ...}}."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:300] or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data))
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])[:300]
        return json.dumps(err)[:300]
    return body.strip()[:300]
