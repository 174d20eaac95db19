"""Persistent response cache: nothing computed twice, across tasks, runs and processes.

One SQLite file (WAL mode, so several xdist workers write at once) maps
(model fingerprint, request) -> response. The engine commits after every chunk of answers, so
a run killed at any moment keeps everything but the chunk in flight; rerun, it computes only
what is missing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..core.requests import Request, Response
from ..models.registry import API_BACKENDS
from ..models.spec import ModelSpec
from .fingerprint import fingerprint_of, fingerprint_parts

_BUSY_TIMEOUT_S = 60


def request_key(req: Request) -> str:
    blob = json.dumps([req.kind, req.args], ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


# What an API backend's `take_stated` gives for a request no server answered (an empty
# document): it depends on no stated identity, and goes under the one the probe found.
UNSTATED = "unknown"


class ResponseCache:
    """`model_fingerprint` is the key answers are looked up under. `key_for`, where given, says
    under which key each new answer is stored (None: not at all): the API backends' answers go
    under the model identity their server stated. A cache that is not `enabled` looks up and
    stores nothing; `note` says why, for the terminal."""

    def __init__(
        self,
        path: Path,
        model_fingerprint: str,
        *,
        key_for: Callable[[Any], str | None] | None = None,
        parts: dict[str, Any] | None = None,
        note: str | None = None,
        enabled: bool = True,
    ) -> None:
        self.path = path
        self.fp = model_fingerprint
        self.key_for = key_for
        self.parts = parts or {}
        self.note = note
        self.enabled = enabled
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        # Switching a new file to WAL takes an exclusive lock and SQLite answers "database is
        # locked" at once, without waiting, when several xdist workers open it together.
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        for attempt in itertools.count(1):
            try:
                self._set_up()
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(min(0.02 * attempt, 0.5))

    def _set_up(self) -> None:
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS responses ("
            " model TEXT NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,"
            " PRIMARY KEY (model, key))"
        )

    def lookup(self, requests: Iterable[Request]) -> dict[Request, Response]:
        keyed = {request_key(r): r for r in requests}
        found: dict[Request, Response] = {}
        if not self.enabled:
            return found
        keys = list(keyed)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT key, value FROM responses WHERE model = ? AND key IN ({marks})",  # noqa: S608
                [self.fp, *chunk],
            )
            for key, value in rows:
                found[keyed[key]] = _decode(keyed[key], json.loads(value))
        return found

    def record(self) -> dict[str, Any]:
        """The fingerprint's parts answers are keyed by, for results.json (empty when disabled)."""
        return {**self.parts, "key": self.fp} if self.parts else {}

    def store(
        self, answers: Iterable[tuple[Request, Response]], stated: Callable[[Request], Any] | None = None
    ) -> None:
        """Commit `answers`; `stated(request)` is the model identity the server stated for one
        (API backends), which picks the key it is stored under."""
        if not self.enabled:
            return
        keyed = (
            (self.key_for(stated(r) if stated else UNSTATED) if self.key_for else self.fp, r, a) for r, a in answers
        )
        rows = [(fp, request_key(r), r.kind, json.dumps(a)) for fp, r, a in keyed if fp is not None]
        if rows:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)", rows)

    def close(self) -> None:
        if self.enabled:
            self.db.close()


def _identity_text(identity: Any) -> str:
    model, system = identity
    return " ".join(x for x in (model, f"(system_fingerprint {system})" if system else None) if x)


def open_response_cache(path: Path, spec: ModelSpec, *, explicit: bool, batch_size: int | str) -> ResponseCache:
    """The run's cache for `spec`. For an API backend the servers are asked first which model
    they serve (one token); answers are looked up under that identity and each new answer stored
    under the identity its response states. A server that states none gets its answers cached
    only when `explicit` (the user named a cache folder)."""
    parts = fingerprint_parts(spec)
    if spec.backend not in API_BACKENDS:
        return ResponseCache(path, fingerprint_of(parts), parts=parts)
    from ..models.registry import backend_class

    probe = backend_class(spec.backend).probe(spec, batch_size)
    urls = ", ".join(probe.identities) or "?"
    if probe.error is not None:
        return ResponseCache(path, "", enabled=False, note=f"lmeval: cache: answers not cached: {probe.error}")
    stated = set(probe.identities.values())
    if len(stated) > 1:
        said = "; ".join(f"{url}: {_identity_text(i) if i else 'nothing'}" for url, i in probe.identities.items())
        note = f"lmeval: cache: answers not cached: the servers state different models ({said})"
        return ResponseCache(path, "", enabled=False, note=note)
    identity = stated.pop()

    def key(ident: Any) -> str:
        return fingerprint_of({**parts, "server_identity": ident})

    if identity is None and not explicit:
        note = (
            f"lmeval: cache: answers not cached: the server at {urls} states no model identity "
            "(pass --cache-dir to cache them anyway)"
        )
        return ResponseCache(path, "", enabled=False, note=note)
    if identity is None:
        note = f"lmeval: cache: the server at {urls} states no model identity; cached anyway, as --cache-dir asks"
    else:
        note = f"lmeval: cache: answers cached under the model the server states: {_identity_text(identity)}"

    def key_for(ident: Any) -> str | None:
        if ident == UNSTATED:  # answered without the server (an empty document)
            return key(identity)
        if ident is None and not explicit:
            return None
        return key(ident)

    return ResponseCache(path, key(identity), key_for=key_for, parts={**parts, "server_identity": identity}, note=note)


def _decode(req: Request, value: Any) -> Response:
    if req.kind == "loglikelihood":
        return (float(value[0]), bool(value[1]))
    return value
