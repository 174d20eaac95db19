"""A cache problem never costs results: each fault as a user meets it, through the real plugin
and a real condition, ends in every document scored, one line naming the file and what to do, no
traceback, and a healthy rerun that computes what it should:

- a cache folder whose parent is a file: not cached at all;
- a database of garbage bytes: set aside under a new name (kept, byte for byte), a fresh one used;
- a database whose pages are garbage past its header (found at the first lookup): not used,
  left as it is, the line says to move it aside;
- a full disk while storing: a child run whose file size limit stops the database's growth
  (EFBIG; 2,000 documents, whose output stays a few dozen lines), and where this machine lets
  the test mount one in a private mount namespace, a small tmpfs (ENOSPC): storing stops, the
  answers stored before it are used by the rerun;
- a read-only cache holding some answers: a read-only bind mount of its folder (in a private
  mount namespace) and, where the file system has it, an immutable file (`chattr +i`); both are
  real as root, where permission bits stop nothing. The cached answers are read, the others
  computed, nothing stored.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from quiz_project import read_json, write_quiz, write_rows

CACHE_LINE = "lmeval: cache:"
QUIZ_REQUESTS = 5 * 3 + 3 * 2  # quiz_a: 5 documents x 3 choices, quiz_b: 3 x 2
LIMIT_2_REQUESTS = 2 * 3 + 2 * 2  # --limit 2
WRITABLE = "pass --cache-dir to a writable folder or --no-cache"
SPACE = "free some space, or pass --cache-dir to another folder or --no-cache"


def _cmd(out: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "evals", "-q", "-p", "no:cacheprovider",
        "--model", "dummy:d", "--data-dir", "data", "--output-path", out, *extra,
    ]  # fmt: skip


def _child(
    project: Path, out: str, *extra: str, prefix: tuple[str, ...] = (), preexec_fn: Callable[[], None] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, *_cmd(out, *extra)], cwd=project, capture_output=True, text=True, timeout=300, preexec_fn=preexec_fn
    )


def _cache_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if CACHE_LINE in line]


def _engine_line(requests_from_cache: int, computed: int) -> str:
    return f"{requests_from_cache} from cache, {computed} computed"


def _whole(out: Path) -> dict:
    """results.json of a run that scored every selected document; its results."""
    doc = read_json(out / "results.json")
    assert doc["partial"] is False
    assert doc["not_scored"] == []
    for task, sizes in doc["n-samples"].items():
        assert sizes["effective"] == sizes["original"], task
    return doc["results"]


def _seen(result: subprocess.CompletedProcess | pytest.RunResult) -> tuple[int, str, str]:
    if isinstance(result, pytest.RunResult):
        return result.ret, result.stdout.str(), result.stderr.str()
    return result.returncode, result.stdout, result.stderr


def _one_line(result: subprocess.CompletedProcess | pytest.RunResult, line: str) -> None:
    """Exit 0, the cache's one line (nothing else about the cache), no traceback, no error."""
    code, stdout, stderr = _seen(result)
    assert code == 0, stdout[-3000:] + stderr[-3000:]
    assert _cache_lines(stdout + stderr) == [line]
    assert "Traceback" not in stdout + stderr
    assert not [x for x in (stdout + stderr).splitlines() if x.startswith(("ERROR", "E  "))]


def _rows(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


def _many(project: Path, n: int) -> int:
    """quiz_a with `n` documents of 4 choices: the number of requests of the whole quiz."""
    rows = [
        {"question": f"q {i}?", "choices": ["a" * (1 + (i + k) % 4) for k in range(4)], "label": i % 4}
        for i in range(n)
    ]
    write_rows(project / "data" / "local" / "quiz" / "a" / "test.jsonl", rows)
    return 4 * n + 3 * 2


# -- a cache folder that cannot be made --------------------------------------------------------
def test_a_cache_folder_under_a_file_is_one_line_and_the_run_whole(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    (pytester.path / "afile").write_text("not a folder\n")
    db = pytester.path / "afile" / "sub" / "responses.sqlite"

    result = pytester.runpytest(*_cmd("out1", "--cache-dir", "afile/sub")[3:])
    _one_line(result, f"lmeval: cache: answers not cached: cannot open {db} (Not a directory); {WRITABLE}")
    results = _whole(pytester.path / "out1")
    assert (pytester.path / "afile").read_text() == "not a folder\n"

    healthy = pytester.runpytest(*_cmd("out2", "--cache-dir", "cache")[3:])
    assert healthy.ret == 0
    assert _engine_line(0, QUIZ_REQUESTS) in healthy.stdout.str()
    assert _whole(pytester.path / "out2") == results
    assert _rows(pytester.path / "cache" / "responses.sqlite") == QUIZ_REQUESTS


# -- corrupted databases -----------------------------------------------------------------------
def test_a_corrupted_database_is_set_aside_and_a_fresh_one_used(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    folder = pytester.path / "cache"
    folder.mkdir()
    garbage = os.urandom(5000)
    (folder / "responses.sqlite").write_bytes(garbage)

    result = pytester.runpytest(*_cmd("out1", "--cache-dir", "cache")[3:])
    aside = list(folder.glob("responses.sqlite.corrupt-*"))
    assert len(aside) == 1, sorted(p.name for p in folder.iterdir())
    assert aside[0].read_bytes() == garbage  # set aside, never deleted
    db = folder / "responses.sqlite"
    _one_line(
        result,
        f"lmeval: cache: {db} was corrupted (file is not a database): set aside as {aside[0]}, "
        "a fresh cache started in its place",
    )
    results = _whole(pytester.path / "out1")
    assert _rows(db) == QUIZ_REQUESTS  # the fresh cache holds this run's answers

    rerun = pytester.runpytest(*_cmd("out2", "--cache-dir", "cache")[3:])
    assert rerun.ret == 0
    assert _cache_lines(rerun.stdout.str()) == []
    assert _engine_line(QUIZ_REQUESTS, 0) in rerun.stdout.str()
    assert _whole(pytester.path / "out2") == results
    assert list(folder.glob("responses.sqlite.corrupt-*")) == aside


def test_a_database_corrupted_past_its_header_is_not_used_and_left_as_it_is(tmp_path: Path) -> None:
    project = write_quiz(tmp_path)
    assert _child(project, "out0", "--cache-dir", "cache").returncode == 0
    db = project / "cache" / "responses.sqlite"
    pages = db.stat().st_size // 4096
    assert pages >= 3  # the header and schema page, the table's and its index's pages
    with db.open("r+b") as fh:
        for page in range(1, pages):  # every page but the first: the file still opens
            fh.seek(page * 4096)
            fh.write(os.urandom(4096))
    damaged = db.read_bytes()

    result = _child(project, "out1", "--cache-dir", "cache")
    _one_line(
        result,
        f"lmeval: cache: answers no longer cached: {db} is corrupted (database disk image is malformed); "
        "move it aside, or pass --cache-dir to another folder",
    )
    assert _engine_line(0, QUIZ_REQUESTS) in result.stdout
    results = _whole(project / "out1")
    assert db.read_bytes() == damaged

    db.rename(db.with_name("moved-aside.sqlite"))  # what the line says to do
    healthy = _child(project, "out2", "--cache-dir", "cache")
    assert healthy.returncode == 0
    assert _cache_lines(healthy.stdout) == []
    assert _engine_line(0, QUIZ_REQUESTS) in healthy.stdout
    assert _whole(project / "out2") == results


# -- a full disk -------------------------------------------------------------------------------
def test_a_file_size_limit_on_the_cache_stops_storing_in_one_line(tmp_path: Path) -> None:
    """2,000 documents: on a full disk every item used to error, one traceback each."""
    project = write_quiz(tmp_path)
    total = _many(project, 2000)
    limit = 640 << 10  # the reports fit (documents.jsonl ~330 KB), the cache (~2 MB) does not

    def small_files() -> None:  # a write past the limit fails with EFBIG instead of a signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = _child(project, "out1", "--cache-dir", "cache", preexec_fn=small_files)
    db = project / "cache" / "responses.sqlite"
    (line,) = _cache_lines(result.stdout) or [""]
    # SQLite says "disk I/O error" for EFBIG (ENOSPC is "database or disk is full")
    assert line in [
        f"lmeval: cache: new answers not stored: writing {db} failed ({why}); {SPACE}"
        for why in ("disk I/O error", "database or disk is full")
    ], result.stdout[-3000:]
    _one_line(result, line)
    assert len(result.stdout.splitlines()) < 100
    assert len(result.stderr.splitlines()) < 5
    assert _engine_line(0, total) in result.stdout
    results = _whole(project / "out1")
    stored = _rows(db)
    assert 0 < stored < total  # what was stored before the disk filled is kept

    rerun = _child(project, "out2", "--cache-dir", "cache")
    assert rerun.returncode == 0
    assert _cache_lines(rerun.stdout) == []
    assert _engine_line(stored, total - stored) in rerun.stdout
    assert _whole(project / "out2") == results
    assert _rows(db) == total


def _private_mounts(tmp_path: Path, setup: str) -> tuple[str, ...]:
    """The prefix that runs a command in a private mount namespace after the shell `setup`
    (given the folder as $0), where this machine allows one; else the test skips. Its mounts
    end with the command: nothing is left mounted, whatever happens."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare here")
    prefix = ("unshare", "--mount", "--propagation", "private")
    if os.geteuid() != 0:
        prefix = (*prefix, "--map-root-user")
    probe = tmp_path / "probe"
    probe.mkdir()
    done = subprocess.run([*prefix, "sh", "-c", setup, str(probe)], capture_output=True, text=True)
    probe.rmdir()
    if done.returncode != 0:
        pytest.skip(f"cannot mount in a private namespace here: {done.stderr.strip()}")
    return (*prefix, "sh", "-c", f'{setup} && exec "$@"')


def test_a_full_tmpfs_under_the_cache_stops_storing_in_one_line(tmp_path: Path) -> None:
    project = write_quiz(tmp_path / "project")
    total = _many(project, 400)  # a cache of ~400 KB, on 256 KiB
    (project / "cache").mkdir()
    prefix = _private_mounts(tmp_path, 'mount -t tmpfs -o size=256k tmpfs "$0"')

    result = _child(project, "out1", "--cache-dir", "cache", prefix=(*prefix, str(project / "cache")))
    db = project / "cache" / "responses.sqlite"
    _one_line(result, f"lmeval: cache: new answers not stored: writing {db} failed (database or disk is full); {SPACE}")
    assert _engine_line(0, total) in result.stdout
    results = _whole(project / "out1")

    healthy = _child(project, "out2", "--cache-dir", "cache")  # the tmpfs went with its namespace
    assert healthy.returncode == 0
    assert _cache_lines(healthy.stdout) == []
    assert _engine_line(0, total) in healthy.stdout
    assert _whole(project / "out2") == results


# -- a read-only cache holding some answers ----------------------------------------------------
@pytest.fixture
def some_cached(tmp_path: Path) -> Iterator[Path]:
    """The quiz with the answers of its first two documents per task cached."""
    project = write_quiz(tmp_path / "project")
    assert _child(project, "out0", "--cache-dir", "cache", "--limit", "2").returncode == 0
    assert _rows(project / "cache" / "responses.sqlite") == LIMIT_2_REQUESTS
    yield project


def _computes_the_rest_when_healthy(project: Path, results: dict) -> None:
    """Nothing was stored by the faulty run: a healthy one reads the same answers, computes the
    rest, and stores them."""
    db = project / "cache" / "responses.sqlite"
    assert _rows(db) == LIMIT_2_REQUESTS
    healthy = _child(project, "out2", "--cache-dir", "cache")
    assert healthy.returncode == 0
    assert _cache_lines(healthy.stdout) == []
    assert _engine_line(LIMIT_2_REQUESTS, QUIZ_REQUESTS - LIMIT_2_REQUESTS) in healthy.stdout
    assert _whole(project / "out2") == results
    assert _rows(db) == QUIZ_REQUESTS


def test_a_read_only_cache_folder_is_read_and_not_written(some_cached: Path) -> None:
    project = some_cached
    folder = project / "cache"
    prefix = _private_mounts(project.parent, 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0"')

    result = _child(project, "out1", "--cache-dir", "cache", prefix=(*prefix, str(folder)))
    db = folder / "responses.sqlite"
    _one_line(
        result, f"lmeval: cache: answers read but not stored: cannot write {db} (Read-only file system); {WRITABLE}"
    )
    assert _engine_line(LIMIT_2_REQUESTS, QUIZ_REQUESTS - LIMIT_2_REQUESTS) in result.stdout
    _computes_the_rest_when_healthy(project, _whole(project / "out1"))


def test_an_immutable_cache_file_is_read_and_not_written(some_cached: Path) -> None:
    project = some_cached
    db = project / "cache" / "responses.sqlite"
    if shutil.which("chattr") is None:
        pytest.skip("no chattr here")
    done = subprocess.run(["chattr", "+i", str(db)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a file immutable here: {done.stderr.strip()}")
    try:
        result = _child(project, "out1", "--cache-dir", "cache")
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    _one_line(
        result, f"lmeval: cache: answers read but not stored: cannot write {db} (Operation not permitted); {WRITABLE}"
    )
    assert _engine_line(LIMIT_2_REQUESTS, QUIZ_REQUESTS - LIMIT_2_REQUESTS) in result.stdout
    _computes_the_rest_when_healthy(project, _whole(project / "out1"))


def test_the_cache_module_raises_nothing_on_a_folder_it_cannot_make(tmp_path: Path) -> None:
    """The cache on its own: what the run relies on (no exception, a note, nothing stored)."""
    from pytest_lmeval.core.requests import Request
    from pytest_lmeval.engine.cache import ResponseCache

    (tmp_path / "afile").write_text("x")
    cache = ResponseCache(tmp_path / "afile" / "sub" / "responses.sqlite", "fp")
    request = Request("loglikelihood", ("Q", " a"))
    cache.store([(request, (-1.0, True))])
    assert cache.lookup([request]) == {}
    assert not cache.enabled and not cache.writable
    assert cache.note is not None and cache.note.count("\n") == 0
    cache.close()
    assert json.loads(json.dumps(cache.record())) == {}
