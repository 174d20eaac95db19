"""Debian's Chromium, headless, for the tests that read what a page shows after its script ran
(report.html, the comparison page, the served index); they skip where it is not installed
(.ci/run installs it)."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")

# Flags that work offline: no sandbox as root, no background connections to refuse.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Browser:
    """Chromium on one page: the DOM after its script ran, and a screenshot, at an address."""

    def __init__(self, profile: Path) -> None:
        self.flags = [*FLAGS, f"--user-data-dir={profile}"]

    def dom(self, url: str) -> str:
        out = subprocess.run([CHROMIUM, *self.flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    def screenshot(self, url: str, path: Path, height: int = 1600, min_bytes: int = 20_000) -> Path:
        """A window as tall as `height`: headless chromium draws only the top of a page that
        its script scrolled, so a list further down needs a window that holds the page."""
        subprocess.run(
            [CHROMIUM, *self.flags, f"--window-size=1280,{height}", "--hide-scrollbars", f"--screenshot={path}", url],
            capture_output=True, timeout=120,
        )  # fmt: skip
        head = path.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == (1280, height)
        assert path.stat().st_size > min_bytes  # text and tables, not a blank page
        return path
