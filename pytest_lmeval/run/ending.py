"""The run's end on the controlling process: conclude into the RunResult once every document
ran (gates logged as tests of their own, before the exit code is set), gather what was not
scored, write the reports, set the exit status, and print the summary."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from ..core.errors import interruption_name
from ..engine.unscored import ERROR
from ..features.gate_tests import log_gates
from ..report.output_folder import ReportsNotWritten, holding
from ..report.pytest_html_fragment import summary_fragment
from ..report.terminal import print_not_written, print_summary, print_unscored
from ..report.writer import write_reports
from .run import Run


class Ending:
    """The run's end hooks (registered by plugin.py)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.not_written: str | None = None  # the one line when the reports could not be written

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator:
        """After every document ran (on all workers): conclude, and report each gate as a test
        of its own, so terminal, JUnit XML and the exit code all show it."""
        result = yield
        run = self.run
        if not run.is_worker and not run.stopped and (run.records or run.failures):
            log_gates(session, run.conclude().gates)
        return result

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """Ctrl-C or a stop signal outside the model's work (the engine notes its own)."""
        if self.run.interrupted_by is None:
            self.run.interrupted_by = interruption_name(excinfo.value)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        run = self.run
        if run.is_worker:
            run.xdist.send(run.worker_output(run.xdist.my_items(session.items)))
            return
        if exitstatus == pytest.ExitCode.USAGE_ERROR:  # bad input: its one ERROR line says it all
            return
        run.gather(session, exitstatus)
        if run.has_output:  # partial or not: what was scored is written, the rest listed
            result = run.conclude()
            if result.results.entries or result.not_scored:
                # one set or none: Ctrl-C or a full disk here is one line, the table still printed
                try:
                    with holding(run.config, run.output_dir()):
                        result.output_files = write_reports(result, run.output_dir(), run.options.log_samples)
                except ReportsNotWritten as exc:
                    self.not_written = str(exc)
        elif run.unscored.docs or run.result is not None:
            run.conclude()  # nothing scored: the terminal still says which documents and why
        errors = any(status == ERROR for status, _ in run.unscored.docs.values())
        if run.signals.exit_code is not None:  # SIGTERM, SIGHUP: 128 + the signal, as a shell says it
            session.exitstatus = run.signals.exit_code
        elif run.stopped or self.not_written:  # interrupted, the backend gave up, no reports: not what was asked
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        elif (run.unscored.docs or run.failures or errors) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list, summary: list, postfix: list, session: Any) -> None:
        """With pytest-html, its report carries the same results table and gates."""
        if self.run.result is not None and not self.run.is_worker:
            prefix.append(summary_fragment(self.run.result))

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        result = self.run.result
        if self.run.is_worker or result is None:
            return
        if self.run.has_output:
            print_summary(result, terminalreporter)
        if self.not_written:
            print_not_written(self.not_written, terminalreporter)
        print_unscored(result, terminalreporter)
