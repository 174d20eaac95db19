"""`python -m pytest_lmeval.report serve DIR --port N`: writes the folder's index, serves it on
127.0.0.1 at the URL it prints, the index and each run's report load in a real headless browser
(Debian's chromium; that part skips where it is missing), and Ctrl-C (SIGINT) stops it with
exit status 0."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from headless import Browser, needs_chromium
from quiz_project import run, write_quiz


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(folder: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "pytest_lmeval.report", "serve", str(folder), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        if line.startswith("lmeval: serving"):
            assert line.strip() == f"lmeval: serving {folder} at http://127.0.0.1:{port}/ (Ctrl-C stops)"
            return server
        if not line and server.poll() is not None:
            break
    server.kill()
    raise AssertionError(f"the server did not start: {server.stderr.read() if server.stderr else ''}")


def _stop(server: subprocess.Popen) -> str:
    server.send_signal(signal.SIGINT)
    out, _ = server.communicate(timeout=30)
    assert server.returncode == 0
    return out


@pytest.fixture
def runs(pytester: pytest.Pytester) -> Path:
    write_quiz(pytester.path)
    assert run(pytester, "evals", "--data-dir", "data", "--model", "dummy:a", "--output-path", "reports/a").ret == 0
    assert run(pytester, "evals", "--data-dir", "data", "--model", "dummy:b", "--output-path", "reports/b").ret == 0
    return pytester.path / "reports"


def test_serve_answers_on_localhost_and_stops_on_ctrl_c(runs: Path) -> None:
    port = _free_port()
    server = _start(runs, port)
    try:
        index = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).read().decode()
        report = urllib.request.urlopen(f"http://127.0.0.1:{port}/a/report.html", timeout=30)
        assert report.status == 200
    finally:
        out = _stop(server)
    assert "<h1>lmeval runs</h1>" in index and 'href="a/report.html"' in index and 'href="b/report.html"' in index
    assert (runs / "index.html").is_file() and "lmeval: stopped" in out


def test_a_taken_port_is_one_error_line(runs: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = subprocess.run(
            [sys.executable, "-m", "pytest_lmeval.report", "serve", str(runs), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert res.returncode == 1
    assert res.stderr.startswith(f"ERROR: cannot serve on 127.0.0.1:{port}: ") and res.stderr.count("\n") == 1


@needs_chromium
def test_the_served_index_in_chromium(runs: Path, tmp_path: Path) -> None:
    port = _free_port()
    server = _start(runs, port)
    browser = Browser(tmp_path / "profile")
    try:
        dom = browser.dom(f"http://127.0.0.1:{port}/")
        report = browser.dom(f"http://127.0.0.1:{port}/b/report.html")
    finally:
        _stop(server)
    assert "<h1>lmeval runs</h1>" in dom
    assert '<h3 id="task-quiz_a">quiz_a</h3>' in dom and "<h3>dummy:a</h3>" in dom
    assert 'href="a/report.html"' in dom and 'href="b/report.html"' in dom
    assert '<td class="num">0.6000</td>' in dom  # quiz_a's acc, as the dummy scores it
    assert "quiz_a" in report
