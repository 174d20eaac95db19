"""Gates as test results: each judged gate is logged as a test of its own, so every reporter
pytest has (terminal, JUnit XML, pytest-html, --lf) and the exit code treat it like one.

The reports are made on the controlling process after every document ran, so under xdist they
come from the one process that has all the scores. They go through the ordinary logging hooks
with what a real item's reports carry: setup, call and teardown, and the user properties on
each phase (JUnit XML writes the teardown report's)."""

from __future__ import annotations

from typing import Any

import pytest

from .gates import Gate

GATES_FILE = "lmeval-gates"  # the gates' "file" in node ids: lmeval-gates::gate[mmlu:acc>=0.45]


def _properties(gate: Gate) -> list[tuple[str, object]]:
    props: list[tuple[str, object]] = [("summary", gate.summary)]
    props += [(k, v) for k, v in gate.figures.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)]
    return props


def log_gates(session: pytest.Session, gates: list[Gate]) -> None:
    # counted as collected, so the terminal's progress ends at 100%
    session.testscollected += len(gates)
    for gate in gates:
        _log_gate(session.config.hook, gate)


def _log_gate(hook: Any, gate: Gate) -> None:
    nodeid = f"{GATES_FILE}::{gate.name}"
    location = (GATES_FILE, None, gate.name)
    props = _properties(gate)
    hook.pytest_runtest_logstart(nodeid=nodeid, location=location)
    for when in ("setup", "call", "teardown"):
        failed = when == "call" and not gate.passed
        report = pytest.TestReport(
            nodeid=nodeid,
            location=location,
            keywords={"lmeval_gate": 1},
            outcome="failed" if failed else "passed",
            longrepr="\n".join([gate.summary, *gate.details]) if failed else None,
            when=when,
            user_properties=props,
        )
        hook.pytest_runtest_logreport(report=report)
    hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)
