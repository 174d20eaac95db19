"""The run's extension points: hooks the feature plugins implement (registered through
`pytest_addhooks`, so a user's conftest.py or another plugin can implement them too).

The run calls them at three moments of its life: when this process has its answers, when a
document is scored, and when the controlling process concludes the run into a `RunResult`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..core.requests import DocRequests, Request
    from ..engine.answering import EngineStats
    from ..tasks.benchmark import Doc
    from .result import RunResult
    from .run import Run

hookspec = pytest.hookspec


@hookspec
def pytest_lmeval_answered(run: Run, works: list[DocRequests], answers: dict[Request, Any], stats: EngineStats) -> None:
    """This process's documents have their model answers (`stats`: what computing them took);
    items are scored after every implementation returned (the judge answers judged metrics here)."""


@hookspec
def pytest_lmeval_document_record(doc: Doc, record: dict[str, Any]) -> None:
    """A scored document's record, before it travels to the controller: add fields to it
    (its confidence, what its requests cost)."""


@hookspec
def pytest_lmeval_conclude(result: RunResult) -> None:
    """Every document ran: add a feature's part of the result (gates, comparisons, robustness,
    figures in `result.sections` and lines in `result.lines`). Runs once, on the controller."""
