"""Persistent response cache: nothing computed twice, across tasks, runs and processes.

One SQLite file (WAL mode, so several xdist workers write at once) maps
(model fingerprint, request) -> response. The engine commits after every chunk of answers, so
a run killed at any moment keeps everything but the chunk in flight; rerun, it computes only
what is missing.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import itertools
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
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
    stores nothing; `note` says why, for the terminal.

    A cache problem never costs results: no SQLite or OS error leaves this class. A file that
    cannot be opened for writing is read where it can be (`writable` False), or not used at all
    (`enabled` False); a corrupted file is set aside under a new name and a fresh one started;
    a write that fails (a full disk) stops storing for the rest of the run and a read that
    fails is a miss. The first fault's one line replaces `note`: the run prints it at its end."""

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
        self.writable = enabled  # False once answers can no longer be stored (read-only, disk full)
        self.readable = enabled  # False once the file cannot be read at all (corrupted mid-run)
        self.fault: str | None = None  # the first fault's line (it is also `note`)
        self.db: sqlite3.Connection | None = None
        if enabled:
            self._open()

    # -- opening ---------------------------------------------------------------------------------
    def _open(self) -> None:
        # SQLite opens a file it cannot write (a read-only file system, an immutable file) for
        # reading without a word, and fails only at the first write: the system is asked first
        error: BaseException | None = _os_error(self.path, folder=False)
        if error is None:
            try:
                self._connect()
                return
            except (sqlite3.Error, OSError) as exc:
                error = exc
                self._drop()
        if _is_corrupt(error):
            try:
                aside = self._start_afresh()
            except (sqlite3.Error, OSError) as exc:
                error = exc
                self._drop()
            else:
                self._faulted(
                    f"{_shown(self.path)} was corrupted ({_first_line(error)}): set aside as {_shown(aside)}, "
                    "a fresh cache started in its place"
                )
                return
        self.writable = False
        why, fix = self._why(error)
        if self._open_read_only():
            self._faulted(f"answers read but not stored: cannot write {_shown(self.path)} ({why}); {fix}")
            return
        self.enabled = self.readable = False
        self._faulted(f"answers not cached: cannot open {_shown(self.path)} ({why}); {fix}")

    def _start_afresh(self) -> Path:
        """Set the corrupted file aside and open a fresh one, under a lock on the folder: xdist
        workers find it corrupted together, and the first one to get the lock sets it aside."""
        with _folder_lock(self.path.parent):
            try:
                self._connect()  # another process set it aside first: its name is the newest
                aside = self.path.parent.glob(f"{glob.escape(self.path.name)}.corrupt-*")
                return max((a for a in aside if not a.name.endswith(("-wal", "-shm"))), default=self.path)
            except sqlite3.Error as exc:
                self._drop()
                if not _is_corrupt(exc):
                    raise
            aside = _set_aside(self.path)
            self._connect()
            return aside

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
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
        assert self.db is not None
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS responses ("
            " model TEXT NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,"
            " PRIMARY KEY (model, key))"
        )

    def _open_read_only(self) -> bool:
        """Open the file for reading only. In a read-only folder SQLite cannot create the WAL's
        shared-memory file, so the file is then read as immutable (what it holds, checkpointed)."""
        try:
            if not self.path.is_file():
                return False
            target = self.path.absolute().as_uri()
        except OSError:
            return False
        for query in ("?mode=ro", "?mode=ro&immutable=1"):
            try:
                self.db = sqlite3.connect(target + query, uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
                self.db.execute("SELECT 1 FROM responses LIMIT 1").fetchall()
                return True
            except sqlite3.Error:
                self._drop()
        return False

    def _drop(self) -> None:
        if self.db is not None:
            with contextlib.suppress(sqlite3.Error):
                self.db.close()
        self.db = None

    # -- faults ----------------------------------------------------------------------------------
    def _faulted(self, text: str) -> None:
        """The first fault's line replaces the note (the terminal shows one line about the cache)."""
        if self.fault is None:
            self.fault = self.note = f"lmeval: cache: {text}"

    def _why(self, exc: BaseException) -> tuple[str, str]:
        """Why the file could not be used, in the system's words where SQLite's do not say
        ("unable to open database file"), and what to do about it."""
        if isinstance(exc, sqlite3.Error) and _code(exc) in ("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_IOERR"):
            exc = _os_error(self.path) or exc
        if isinstance(exc, OSError):
            why = exc.strerror or _first_line(exc)
            full = exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO)
        else:
            why, full = _first_line(exc), _code(exc) in ("SQLITE_FULL", "SQLITE_IOERR")
        if full:
            return why, "free some space, or pass --cache-dir to another folder or --no-cache"
        return why, "pass --cache-dir to a writable folder or --no-cache"

    def _failed(self, doing: str, exc: BaseException) -> None:
        """A read or write failed mid-run: a corrupted file is no longer used at all; otherwise
        writing stops (its answers stay in memory: the run's results are whole) and a failed
        read is a miss."""
        if self.db is not None:
            with contextlib.suppress(sqlite3.Error):
                self.db.rollback()
        why, fix = self._why(exc)
        if _is_corrupt(exc):
            self.writable = self.readable = False
            fix = "move it aside, or pass --cache-dir to another folder"
            self._faulted(f"answers no longer cached: {_shown(self.path)} is corrupted ({why}); {fix}")
        elif doing == "write":
            self.writable = False
            self._faulted(f"new answers not stored: writing {_shown(self.path)} failed ({why}); {fix}")
        else:
            self._faulted(f"cached answers not read: reading {_shown(self.path)} failed ({why}); {fix}")

    # -- answers ---------------------------------------------------------------------------------
    def lookup(self, requests: Iterable[Request]) -> dict[Request, Response]:
        keyed = {request_key(r): r for r in requests}
        found: dict[Request, Response] = {}
        if not self.enabled or not self.readable or self.db is None:
            return found
        keys = list(keyed)
        try:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self.db.execute(
                    f"SELECT key, value FROM responses WHERE model = ? AND key IN ({marks})",  # noqa: S608
                    [self.fp, *chunk],
                )
                for key, value in rows:
                    found[keyed[key]] = _decode(keyed[key], json.loads(value))
        except (sqlite3.Error, OSError, ValueError) as exc:  # what was read is good; the rest is a miss
            self._failed("read", exc)
        return found

    def record(self) -> dict[str, Any]:
        """The fingerprint's parts answers are keyed by, for results.json (empty for a cache
        disabled before its key was known: an API server's identity)."""
        return {**self.parts, "key": self.fp} if self.parts else {}

    def store(
        self, answers: Iterable[tuple[Request, Response]], stated: Callable[[Request], Any] | None = None
    ) -> None:
        """Commit `answers`; `stated(request)` is the model identity the server stated for one
        (API backends), which picks the key it is stored under."""
        if not self.enabled or not self.writable or self.db is None:
            return
        keyed = (
            (self.key_for(stated(r) if stated else UNSTATED) if self.key_for else self.fp, r, a) for r, a in answers
        )
        rows = [(fp, request_key(r), r.kind, json.dumps(a)) for fp, r, a in keyed if fp is not None]
        if rows:
            try:
                with self.db:
                    self.db.execute("BEGIN IMMEDIATE")
                    self.db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)", rows)
            except (sqlite3.Error, OSError) as exc:
                self._failed("write", exc)

    def close(self) -> None:
        self._drop()


def _code(exc: BaseException) -> str:
    """SQLite's primary result code name (SQLITE_FULL, ...); Python 3.10 has only the message."""
    name = getattr(exc, "sqlite_errorname", None)
    if name:
        return "SQLITE_" + name.removeprefix("SQLITE_").split("_")[0]
    text = str(exc)
    for words, code in _CODES_BY_MESSAGE:
        if words in text:
            return code
    return ""


_CODES_BY_MESSAGE = (
    ("file is not a database", "SQLITE_NOTADB"),
    ("malformed", "SQLITE_CORRUPT"),
    ("disk is full", "SQLITE_FULL"),
    ("readonly database", "SQLITE_READONLY"),
    ("unable to open", "SQLITE_CANTOPEN"),
    ("disk I/O error", "SQLITE_IOERR"),
)


def _is_corrupt(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.Error) and _code(exc) in ("SQLITE_NOTADB", "SQLITE_CORRUPT")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _shown(path: Path) -> str:
    return str(path.absolute())


def _os_error(path: Path, *, folder: bool = True) -> OSError | None:
    """What the system says when asked to write where the file is: in its folder, to the file.
    The file itself is never opened: closing another descriptor of it would drop the locks this
    process's SQLite connections hold on it (the run's and the judge's caches share one file)."""
    try:
        if folder:
            with tempfile.TemporaryFile(dir=path.parent):
                pass
        if not path.is_file() or os.access(path, os.W_OK):
            return None
        os.utime(path)  # refused as a write would be, with the system's reason
    except OSError as exc:
        return exc
    return None


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on `folder` (where fcntl exists), held while a file in it is replaced."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; the rename below is still never a deletion
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _set_aside(path: Path) -> Path:
    """Rename a corrupted database (and its -wal and -shm files) to `NAME.corrupt-<UTC time>`:
    set aside, never deleted."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for n in itertools.count(2):
        if not any(Path(f"{aside}{s}").exists() for s in ("", "-wal", "-shm")):
            break
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("-wal", "-shm", ""):  # the database last: a crash in between leaves it in place
        companion = Path(f"{path}{suffix}")
        if companion.exists():
            os.replace(companion, f"{aside}{suffix}")
    return aside


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
