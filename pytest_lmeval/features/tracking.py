"""What every tracker shares: it keeps the run's result when the run concludes, and logs it
once the reports are written (their files are what it uploads); a tracker that cannot be
reached is one line, never the run's failure."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import pytest

from ..models.spec import redact_urls
from .tracker_options import say

if TYPE_CHECKING:
    from ..run.result import RunResult


class Tracker(ABC):
    """A tracker plugin: `name` for its lines, `log(result)` returns the line saying where the
    run went."""

    name = "tracker"
    failed = "not logged"

    def __init__(self, args: dict[str, Any]) -> None:
        self.args = args
        self.result: RunResult | None = None

    def pytest_lmeval_conclude(self, result: RunResult) -> None:
        self.result = result

    def ready(self, result: RunResult) -> bool:
        """Whether there is anything to log (a run that scored nothing logs nothing)."""
        return bool(result.results.entries)

    @pytest.hookimpl(trylast=True)  # after the reports are written (run/ending.py)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.result is None or not self.ready(self.result):
            return
        try:
            line = self.log(self.result)
        except Exception as exc:  # a tracker down is a line, never the run's failure
            say(session.config, f"lmeval {self.name}: {self.failed}: {redact_urls(str(exc).splitlines()[0])[:600]}")
            return
        say(session.config, f"lmeval {self.name}: {line}")

    @abstractmethod
    def log(self, result: RunResult) -> str:
        """Log the run; the line that says where it went."""
