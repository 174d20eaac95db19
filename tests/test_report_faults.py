"""The output folder holds one run's reports, whole, whatever happens while they are written;
each fault as a user meets it:

- a reused --output-path: the new set replaces the earlier one (its samples/ gone), and files of
  the user's own there are kept;
- Ctrl-C while the reports are written (a real SIGINT to a child run held inside report.html):
  one line saying so and which files were written, the table still printed, the earlier set
  untouched (or no folder at all for a first run), nothing temporary left;
- a full disk: a child run whose file size limit stops report.html (EFBIG), and where this
  machine lets root mount one, a full tmpfs (ENOSPC): one line, the table printed, no partial
  set, a non-zero exit;
- an output folder that cannot be created (its parent is a file): one ERROR line before the
  model loads;
- a second run on an output folder a first run is using: one ERROR line, before any model work.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from quiz_project import error_lines, read_json, read_jsonl, run, write_quiz

NOT_WRITTEN = "lmeval: reports not written:"
# A project conftest that holds a child run inside report.html (after results.json and
# documents.jsonl are written) until it is interrupted, when LMEVAL_TEST_HOLD_HTML is set.
HOLD_HTML = """\
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest_lmeval.report.run_page as page

if os.environ.get("LMEVAL_TEST_HOLD_HTML"):
    def render_report(*args, **kwargs):
        Path(os.environ["LMEVAL_TEST_HOLD_HTML"]).touch()
        while True:
            time.sleep(0.05)

    page.render_report = render_report
"""


def _cmd(out: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "evals", "-p", "no:cacheprovider", "--no-cache",
        "--model", "dummy:d", "--data-dir", "data", "--output-path", out, *extra,
    ]  # fmt: skip


def _child(project: Path, out: str, *extra: str, **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(out, *extra), cwd=project, capture_output=True, text=True, timeout=120, **kwargs)


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too), by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(parent: Path, name: str) -> list[str]:
    """Our hidden files beside the output folder: temporary folders, a set moved aside, the lock."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def _lines(text: str, start: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(start)]


def _table_printed(stdout: str) -> bool:
    return any(line.startswith("| - quiz_a") or line.startswith("|quiz") for line in stdout.splitlines())


def _consistent(out: Path, tasks: set[str]) -> None:
    """results.json and documents.jsonl describe the same documents of one run."""
    results = read_json(out / "results.json")
    docs = read_jsonl(out / "documents.jsonl")
    assert set(results["n-samples"]) == tasks
    assert {d["task"] for d in docs} == tasks
    for task in tasks:
        assert results["n-samples"][task]["effective"] == sum(d["task"] == task for d in docs)


# -- a reused output folder --------------------------------------------------------------------
def test_a_reused_output_path_replaces_the_earlier_set_whole(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    args = ("evals", "--data-dir", "data", "--model", "dummy:d", "--output-path", "out")
    first = run(pytester, *args, "--log-samples")
    assert first.ret == 0
    out = pytester.path / "out"
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["quiz_a.jsonl", "quiz_b.jsonl"]

    second = run(pytester, *args, "-k", "quiz_a")
    assert second.ret == 0
    assert sorted(_files(out)) == ["documents.jsonl", "report.html", "results.json"]  # no samples/ of the first
    _consistent(out, {"quiz_a"})
    assert "quiz_b" not in (out / "report.html").read_text()
    assert _leftovers(pytester.path, "out") == []
    assert f"lmeval: wrote {Path('out') / 'results.json'}" in second.outlines


def test_files_of_the_users_own_in_the_output_folder_are_kept(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    args = ("evals", "--data-dir", "data", "--model", "dummy:d", "--output-path", "out")
    assert run(pytester, *args, "--log-samples").ret == 0
    out = pytester.path / "out"
    (out / "notes.txt").write_text("mine\n")
    (out / "samples" / "README").write_text("mine too\n")

    assert run(pytester, *args, "-k", "quiz_b").ret == 0
    assert sorted(_files(out)) == ["documents.jsonl", "notes.txt", "report.html", "results.json", "samples/README"]
    assert (out / "notes.txt").read_text() == "mine\n"
    _consistent(out, {"quiz_b"})
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temporary folder inside


def test_what_a_killed_run_left_is_tidied_and_a_set_it_moved_aside_put_back(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    args = ("evals", "--data-dir", "data", "--model", "dummy:d", "--output-path", "out")
    assert run(pytester, *args).ret == 0
    earlier = _files(pytester.path / "out")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id that no longer runs: a run killed while writing
    (pytester.path / "out").rename(pytester.path / f".out.old-{dead.pid}")  # killed between its renames
    (pytester.path / f".out.tmp-{dead.pid}").mkdir()
    (pytester.path / f".out.tmp-{dead.pid}" / "results.json").write_text("{}")

    result = run(pytester, *args, "-k", "quiz_a")
    assert result.ret == 0
    assert _leftovers(pytester.path, "out") == []  # the earlier set went back, then was replaced whole
    assert earlier.keys() == _files(pytester.path / "out").keys()
    _consistent(pytester.path / "out", {"quiz_a"})


# -- Ctrl-C while writing ------------------------------------------------------------------------
def _interrupted_while_writing(project: Path, out: str) -> tuple[int, str, str]:
    marker = project / "writing-html"
    marker.unlink(missing_ok=True)
    proc = subprocess.Popen(
        _cmd(out), cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "LMEVAL_TEST_HOLD_HTML": str(marker)},
        # Ctrl-C's default, even where this suite runs as a background job (which ignores SIGINT)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.time() + 60
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert marker.exists(), proc.communicate(timeout=60)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    return proc.returncode, stdout, stderr


def test_ctrl_c_while_the_reports_are_written_leaves_the_earlier_set_and_says_so(tmp_path: Path) -> None:
    project = write_quiz(tmp_path)
    (project / "conftest.py").write_text(HOLD_HTML)

    code, stdout, stderr = _interrupted_while_writing(project, "out")  # a first run: no folder at all
    assert code == pytest.ExitCode.INTERRUPTED
    assert _lines(stdout, NOT_WRITTEN) == [
        "lmeval: reports not written: interrupted (Ctrl-C) while writing report.html (nothing written to out)"
    ]
    assert "Traceback" not in stdout + stderr and "KeyboardInterrupt" not in stdout + stderr
    assert _table_printed(stdout)
    assert not (project / "out").exists()
    assert _leftovers(project, "out") == []

    assert _child(project, "out", "--log-samples").returncode == 0
    earlier = _files(project / "out")
    code, stdout, stderr = _interrupted_while_writing(project, "out")
    assert code == pytest.ExitCode.INTERRUPTED
    assert _lines(stdout, NOT_WRITTEN) == [
        "lmeval: reports not written: interrupted (Ctrl-C) while writing report.html "
        "(nothing written; the earlier reports in out are unchanged)"
    ]
    assert "Traceback" not in stdout + stderr
    assert _files(project / "out") == earlier
    assert _leftovers(project, "out") == []


# -- a full disk ---------------------------------------------------------------------------------
def test_a_file_size_limit_while_writing_is_one_line_and_the_table_still_printed(tmp_path: Path) -> None:
    project = write_quiz(tmp_path)
    assert _child(project, "out").returncode == 0
    earlier = _files(project / "out")
    # results.json and documents.jsonl fit under the limit, report.html does not
    limit = (len(earlier["results.json"]) + len(earlier["report.html"])) // 2
    assert max(len(earlier["results.json"]), len(earlier["documents.jsonl"])) < limit < len(earlier["report.html"])

    def small_files() -> None:  # Python ignores SIGXFSZ: a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    for out, what in (("out", "nothing written; the earlier reports in out are unchanged"), ("new", None)):
        result = _child(project, out, preexec_fn=small_files)
        assert result.returncode == pytest.ExitCode.INTERRUPTED, result.stdout[-3000:]
        what = what or "nothing written to new"
        assert _lines(result.stdout, NOT_WRITTEN) == [
            f"lmeval: reports not written: file too large while writing report.html ({what})"
        ]
        assert "Traceback" not in result.stdout + result.stderr
        assert _table_printed(result.stdout)
        assert _leftovers(project, out) == []
    assert _files(project / "out") == earlier
    assert not (project / "new").exists()


@pytest.fixture
def full_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, where this machine lets the tests mount one (root), else the test skips."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def _fill(disk: Path, leave: int) -> None:
    """Fill the disk but for `leave` bytes (whole pages)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096) == 4096:
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    size = filler.stat().st_size // 4096 * 4096
    os.truncate(filler, size - leave)


def test_a_full_disk_while_writing_is_one_line_and_the_earlier_set_is_kept(full_tmpfs: Path) -> None:
    project = write_quiz(full_tmpfs.parent / "project")
    out = full_tmpfs / "out"
    assert _child(project, str(out)).returncode == 0
    earlier = _files(out)
    _fill(full_tmpfs, leave=4096)  # room for the check's probe, not for results.json

    result = _child(project, str(out))
    assert result.returncode == pytest.ExitCode.INTERRUPTED, result.stdout[-3000:] + result.stderr
    assert _lines(result.stdout, NOT_WRITTEN) == [
        "lmeval: reports not written: no space left on device while writing results.json "
        f"(nothing written; the earlier reports in {out} are unchanged)"
    ]
    assert "Traceback" not in result.stdout + result.stderr
    assert _table_printed(result.stdout)
    assert _files(out) == earlier
    assert _leftovers(full_tmpfs, "out") == []


# -- before any model work ---------------------------------------------------------------------------
def test_an_output_folder_that_cannot_be_created_is_one_line_before_the_model_loads(
    pytester: pytest.Pytester,
) -> None:
    write_quiz(pytester.path)
    (pytester.path / "afile").write_text("not a folder\n")
    args = ("evals", "--data-dir", "data", "--model", "dummy:d")
    result = run(pytester, *args, "--output-path", "afile/out")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert error_lines(result) == [
        f"ERROR: --output-path afile/out: cannot write the reports there (not a directory: {pytester.path / 'afile'}); "
        "pass a folder you can create and write with --output-path"
    ]
    assert "loading" not in result.stdout.str()
    assert (pytester.path / "afile").read_text() == "not a folder\n"

    ok = run(pytester, *args, "--output-path", "out")  # the same run, given a folder it can write
    assert ok.ret == 0 and "lmeval: loading dummy:d ..." in ok.outlines


def test_a_second_run_on_an_output_folder_in_use_is_one_line(tmp_path: Path) -> None:
    project = write_quiz(tmp_path)
    (project / "conftest.py").write_text(HOLD_HTML)
    marker = project / "writing-html"
    first = subprocess.Popen(
        _cmd("out"), cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "LMEVAL_TEST_HOLD_HTML": str(marker)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.time() + 60
        while not marker.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert marker.exists()  # the first run is writing its reports

        second = _child(project, "out")
        assert second.returncode == pytest.ExitCode.USAGE_ERROR
        assert _lines(second.stderr, "ERROR:") == [
            f"ERROR: --output-path out: another run (process {first.pid}) is using this output folder; "
            "wait for it to end, or pass another --output-path"
        ]
        assert "loading" not in second.stdout
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    assert not (project / "out").exists()

    third = _child(project, "out")  # once the first ended, the folder is free
    assert third.returncode == 0, third.stdout[-3000:]
    assert json.loads((project / "out" / "results.json").read_text())["partial"] is False
    assert _leftovers(project, "out") == []
