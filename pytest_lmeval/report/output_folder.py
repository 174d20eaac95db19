"""The output folder: checked and locked before any model work, and its report files put in
place as one set.

A run's files (results.json, documents.jsonl, report.html, samples/) are written into a
temporary folder first, then moved into place together:

- a folder that does not exist yet: the temporary folder (`.<name>.tmp-<pid>` beside it) is
  renamed to it;
- a folder holding only an earlier run's files: it is renamed aside (`.<name>.old-<pid>`), the
  new one renamed into place, then the earlier one deleted; no moment holds a mixed folder, and
  a crash between the two renames leaves the earlier set whole beside it (the next run on that
  folder puts it back before writing);
- a folder that holds files of the user's own as well (`--output-path .`, a pytest-html report
  written beside ours), or a mount point, or one whose parent cannot be written: only our
  files are replaced, the user's are never touched. The temporary folder is then inside it
  (`.lmeval-tmp-<pid>`), the earlier results.json removed first and the new one moved in last,
  so a results.json never stands beside files of another run.

Anything that stops the writing (Ctrl-C, a full disk, a bug) removes the temporary folder,
leaves the earlier set as it was, and becomes one line (`ReportsNotWritten`). One run at a
time per folder: an exclusive lock (`fcntl.flock` on `.<name>.lock` beside the folder) is held
from the check before any model work until the reports are written; the process dying
releases it."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from ..core.errors import LmevalError
from ..core.files import fsync_dir
from ..features.baseline_run import PER_DOC_FILE

RESULTS = "results.json"
SAMPLES = "samples"
OUR_FILES = (RESULTS, PER_DOC_FILE, "report.html")  # and samples/*.jsonl
INSIDE_TMP = ".lmeval-tmp-"  # the temporary folder inside an output folder that holds the user's files
INSIDE_LOCK = ".lmeval.lock"  # the lock inside an output folder whose parent cannot be written


class ReportsNotWritten(Exception):
    """The reports were not put in place; the message is the terminal's one line."""


# -- one run at a time ------------------------------------------------------------------------
class FolderLock:
    """An exclusive flock held on a lock file; released (the file removed) once."""

    def __init__(self, path: Path, fd: int | None, created: list[Path]) -> None:
        self.path, self.fd, self.created = path, fd, created

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()  # while still held: a run waiting on it retries on the new file
            os.close(self.fd)
            self.fd = None
        for folder in reversed(self.created):  # parents made for a run that wrote nothing
            with contextlib.suppress(OSError):
                folder.rmdir()
        self.created = []


_HELD = pytest.StashKey[FolderLock]()


def _real(out: Path) -> Path:
    return Path(os.path.realpath(out))


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _lock_path(real: Path) -> Path:
    if real.is_dir() and not _writable(real.parent):
        return real / INSIDE_LOCK
    return real.parent / f".{real.name}.lock"


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f" (process {int(path.read_text().split()[0])})"
    return ""


def _lock(real: Path, created: list[Path]) -> FolderLock | str:
    """The folder's lock, or the line saying which run holds it. Raises OSError where the lock
    file cannot be made."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): no lock; the set is still moved in whole
        return FolderLock(_lock_path(real), None, created)
    while True:
        path = _lock_path(real)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return f"another run{_holder(path)} is using this output folder"
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its holder removed it as we took it: take the file there now
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return FolderLock(path, fd, created)


def _made_parents(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; the ones created, outermost first."""
    missing = []
    for parent in [folder, *folder.parents]:
        if parent.exists():
            break
        missing.append(parent)
    folder.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def _probe(folder: Path) -> None:
    """Create and remove a small file there: the folder can be written."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".lmeval-probe-")
    try:
        os.write(fd, b"lmeval")
    finally:
        os.close(fd)
        os.unlink(name)


def _no_file_in_the_way(real: Path) -> None:
    """A file where the folder or one of its parents should be: ENOTDIR, naming it."""
    for path in [real, *real.parents]:
        if path.exists():
            if not path.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path))
            return


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, or SIGTERM and SIGHUP (run/signals.py)
        return f"interrupted ({getattr(exc, 'signal_name', None) or 'Ctrl-C'})"
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return f"{type(exc).__name__}: {exc}"


def hold_output_folder(config: pytest.Config, out: Path, given: str | None) -> None:
    """Before any model work: the output folder can be created and written, and no other run is
    using it; this run holds it until its reports are written. Raises LmevalError (one line)."""
    label = f"--output-path {given}" if given else f"output folder {out}"
    real = _real(out)
    created: list[Path] = []
    try:
        _no_file_in_the_way(real)
        created = _made_parents(real.parent)
        _probe(real if real.is_dir() else real.parent)
        lock = _lock(real, created)
    except OSError as exc:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        where = f": {exc.filename}" if exc.filename else ""
        raise LmevalError(
            f"{label}: cannot write the reports there ({_reason(exc)}{where}); "
            "pass a folder you can create and write with --output-path"
        ) from None
    if isinstance(lock, str):
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise LmevalError(f"{label}: {lock}; wait for it to end, or pass another --output-path")
    release_output_folder(config)
    config.stash[_HELD] = lock
    config.add_cleanup(lock.release)


def release_output_folder(config: pytest.Config) -> None:
    lock = config.stash.get(_HELD, None)
    if lock is not None:
        lock.release()
        del config.stash[_HELD]


@contextlib.contextmanager
def holding(config: pytest.Config, out: Path) -> Iterator[None]:
    """The folder held while its reports are written (taken now where no check ran before: an
    xdist controller collects nothing), and released after. Raises ReportsNotWritten."""
    try:
        if _HELD not in config.stash:
            real = _real(out)
            try:
                lock = _lock(real, _made_parents(real.parent))
            except OSError as exc:
                raise ReportsNotWritten(f"lmeval: reports not written: {_reason(exc)} ({out})") from None
            if isinstance(lock, str):
                raise ReportsNotWritten(f"lmeval: reports not written: {lock} ({out})")
            config.stash[_HELD] = lock
        yield
    finally:
        release_output_folder(config)


# -- the set, moved in whole -----------------------------------------------------------------
DEFERRED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # held off while the files are renamed


@contextlib.contextmanager
def _uninterruptible() -> Iterator[None]:
    """Ctrl-C (or SIGTERM, SIGHUP) is ignored during the renames (milliseconds) and the
    temporary folder's removal: a set is moved in whole or not at all, and nothing is left."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in DEFERRED}
    for sig, handler in previous.items():
        if handler is not None:  # None: set outside Python, which cannot be put back
            signal.signal(sig, lambda *_: None)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _only_ours(real: Path) -> bool:
    """Whether the folder holds nothing but an earlier run's report files."""
    for entry in real.iterdir():
        name = entry.name
        if name in OUR_FILES and entry.is_file() and not entry.is_symlink():
            continue
        if name.startswith(".") and name.endswith(".tmp"):  # atomic_write's leftover
            continue
        if (
            name == SAMPLES
            and entry.is_dir()
            and not entry.is_symlink()
            and all(s.is_file() and s.suffix == ".jsonl" for s in entry.iterdir())
        ):
            continue
        return False
    return True


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a leftover of this process is ours to remove
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _leftovers(folder: Path, prefix: str) -> Iterator[Path]:
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            pid = entry.name[len(prefix) :]
            if entry.name.startswith(prefix) and pid.isdigit() and not _alive(int(pid)):
                yield entry


def _tidy(real: Path) -> None:
    """Remove what a run killed while writing left behind (its temporary folder), and put back
    an earlier set it had moved aside but not replaced."""
    parent = real.parent
    for old in sorted(_leftovers(parent, f".{real.name}.old-")):
        if not real.exists():
            os.rename(old, real)
        else:
            _remove(old)
    for tmp in _leftovers(parent, f".{real.name}.tmp-"):
        _remove(tmp)
    if real.is_dir():
        for tmp in _leftovers(real, INSIDE_TMP):
            _remove(tmp)


def _swap(real: Path) -> bool:
    """Whether the set replaces the folder whole (else file by file inside it)."""
    if not real.exists():
        return True
    return not os.path.ismount(real) and _writable(real.parent) and _only_ours(real)


def _sorted_for_placing(files: list[Path]) -> list[Path]:
    return sorted(files, key=lambda f: (f == Path(RESULTS), str(f)))  # results.json last


def _place_files(tmp: Path, real: Path, files: list[Path], placed: list[Path]) -> None:
    """Our files one by one, beside the user's: the earlier results.json removed first, the new
    one moved in last."""
    (real / RESULTS).unlink(missing_ok=True)
    for name in OUR_FILES[1:]:
        (real / name).unlink(missing_ok=True)
    samples = real / SAMPLES
    if samples.is_dir() and not samples.is_symlink():
        for entry in samples.glob("*.jsonl"):
            entry.unlink(missing_ok=True)
    for rel in _sorted_for_placing(files):
        (real / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / rel, real / rel)
        placed.append(rel)
    fsync_dir(real)


def _place(tmp: Path, real: Path, files: list[Path], placed: list[Path]) -> None:
    if tmp.parent == real:
        _place_files(tmp, real, files, placed)
        return
    if not real.exists():
        os.rename(tmp, real)
    else:
        aside = real.parent / f".{real.name}.old-{os.getpid()}"
        os.rename(real, aside)
        try:
            os.rename(tmp, real)
        except BaseException:
            os.rename(aside, real)  # the earlier set back where it was
            raise
        _remove(aside)
    placed += files
    fsync_dir(real.parent)


Step = tuple[str, Callable[[Path], Sequence[Path]]]


def write_set(out: Path, steps: Sequence[Step]) -> list[Path]:
    """Run each step (a file's name, and what writes it into a given folder, returning the paths
    written) into a temporary folder, then move the set into `out` as one. Returns the paths in
    `out`; raises ReportsNotWritten, whatever stopped it."""
    real = _real(out)
    placed: list[Path] = []
    current = steps[0][0] if steps else RESULTS
    tmp: Path | None = None
    try:
        with _uninterruptible():
            _tidy(real)
            real.parent.mkdir(parents=True, exist_ok=True)
            pid = os.getpid()
            tmp = real.parent / f".{real.name}.tmp-{pid}" if _swap(real) else real / f"{INSIDE_TMP}{pid}"
            _remove(tmp)
            tmp.mkdir()
        files: list[Path] = []
        for name, step in steps:
            current = name
            files += [Path(p).relative_to(tmp) for p in step(tmp)]
        current = "putting them in place"
        with _uninterruptible():
            _place(tmp, real, files, placed)
            _remove(tmp)
    except BaseException as exc:
        with _uninterruptible():
            if tmp is not None:
                _remove(tmp)
        raise ReportsNotWritten(_not_written_line(exc, current, out, real, placed, steps)) from None
    return [out / rel for rel in files]


def _not_written_line(
    exc: BaseException, current: str, out: Path, real: Path, placed: list[Path], steps: Sequence[Step]
) -> str:
    doing = current if current == "putting them in place" else f"writing {current}"
    if placed:
        names = [str(p) for p in placed]
        missing = [name for name, _ in steps if not any(n == name or n.startswith(name) for n in names)]
        what = f"written to {out}: {', '.join(names)}; not written: {', '.join(missing) or 'none'}"
    elif (real / RESULTS).is_file():
        what = f"nothing written; the earlier reports in {out} are unchanged"
    else:
        what = f"nothing written to {out}"
    return f"lmeval: reports not written: {_reason(exc)} while {doing} ({what})"
