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
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .models.base import ModelSpec
from .requests import Request, Response

_BUSY_TIMEOUT_S = 60

# Model args that change where or how fast a model runs, not what it answers.
_NOT_IN_FINGERPRINT = {
    "batch_size",
    "device",
    "device_map",
    "parallelize",
    "max_memory",
    "prefix_reuse",
    "num_concurrent",
    "max_retries",
    "timeout",
    "api_key_env",
    "backoff",
    "max_backoff",
    "verify_certificate",
    "gpu_memory_utilization",
    "tensor_parallel_size",
    "data_parallel_size",
    "delay",
}
_HASH_LIMIT = 4 << 30  # local weights up to 4 GiB are hashed by content, larger by size+mtime


def default_cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "pytest-lmeval"


def _file_identity(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    total = sum(p.stat().st_size for p in paths)
    for path in sorted(paths):
        digest.update(path.name.encode())
        if total <= _HASH_LIMIT:
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        else:
            stat = path.stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def fingerprint(spec: ModelSpec) -> str:
    """Backend, name, revision or weights' hash, and the model args that change answers."""
    args = {k: v for k, v in sorted(spec.args.items()) if k not in _NOT_IN_FINGERPRINT}
    parts: dict[str, Any] = {"backend": spec.backend, "name": spec.name, "args": args}
    local = Path(os.path.expanduser(spec.name))
    if local.exists():
        gguf = args.get("gguf_file")
        if local.is_file():
            files = [local]
        elif gguf:
            files = [local / str(gguf)]
        else:
            files = [p for p in local.iterdir() if p.suffix in (".safetensors", ".bin", ".json", ".gguf", ".model")]
        parts["weights"] = _file_identity([f for f in files if f.is_file()])
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def request_key(req: Request) -> str:
    blob = json.dumps([req.kind, req.args], ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    def __init__(self, path: Path, model_fingerprint: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fp = model_fingerprint
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

    def store(self, answers: Iterable[tuple[Request, Response]]) -> None:
        rows = [(self.fp, request_key(r), r.kind, json.dumps(a)) for r, a in answers]
        if rows:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)", rows)

    def close(self) -> None:
        self.db.close()


def _decode(req: Request, value: Any) -> Response:
    if req.kind == "loglikelihood":
        return (float(value[0]), bool(value[1]))
    return value
