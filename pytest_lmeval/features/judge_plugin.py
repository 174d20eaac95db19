"""The judging feature as a plugin: when this process has its model answers, the judge answers
the judged metrics' prompts (judging.py's judge phase), and the verdicts stay readable by the
scoring items until the session ends."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .judging import JudgeOptions, check_judge_given, end_judge_phase, run_judge_phase

if TYPE_CHECKING:
    from ..core.requests import DocRequests


class Judging:
    """`--judge-model` and its companions; the phase's token while its verdicts are in use."""

    stash_key = pytest.StashKey["Judging"]()

    def __init__(self, options: JudgeOptions | None, run: Any = None) -> None:
        self.options = options
        self.run = run  # the run (its tasks and this process's work), read once collection is done
        self._token: Any = None

    @pytest.hookimpl(trylast=True)  # after the run built its work (run/collection.py)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """A selected task whose judged metric will ask the judge, and no --judge-model: one
        line now, before the model loads, rather than a failure per document."""
        if self.run is not None and self.run.work:
            check_judge_given(self.run.tasks, self.run.work.values(), self.options)

    def pytest_lmeval_answered(self, run: Any, works: list[DocRequests], answers: dict) -> None:
        self._token = run_judge_phase(run.config, run, works, answers)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self) -> None:
        if self._token is not None:
            end_judge_phase(self._token)
            self._token = None
