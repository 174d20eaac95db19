"""What a run computed, as one typed value.

Every report (the terminal table, results.json, the per-document file, report.html, the
pytest-html fragment, JUnit properties through the gates) reads a `RunResult`, never the
session's internals, and the Python API returns it. Features add their part while the run
concludes (`pytest_lmeval_conclude`): gates, the baseline comparison, robustness, efficiency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.unscored import ERROR
from ..features.baseline_run import BaselineRun
from ..features.gates import Gate
from ..features.paired_comparison import Comparison
from ..scoring.aggregate import Results
from ..tasks.registry import Registry
from ..tasks.task import Task


@dataclass
class RunResult:
    """One run's outcome.

    `results` holds each task's and group's metrics with their standard errors (lm-eval's
    `"acc,none"` keys); `records` each scored document (its metrics, and its samples when they
    were asked for); `not_scored` each selected document without a score, by id, status
    (`error`: it ran and could not be scored; `not run`) and reason. `sections` are the
    features' parts of results.json by key, `lines` their terminal lines, in order."""

    model: str | None  # as given: hf:smollm2-135m
    config: dict[str, Any]  # the run's configuration, as results.json's "config" (secrets redacted)
    results: Results
    tasks: dict[str, Task]
    registry: Registry
    records: list[dict[str, Any]] = field(default_factory=list)
    perturbed: list[dict[str, Any]] = field(default_factory=list)  # records of perturbed documents
    not_scored: list[dict[str, Any]] = field(default_factory=list)
    gates: list[Gate] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)  # with --baseline
    baseline: BaselineRun | None = None
    sections: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    model_info: dict[str, Any] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)  # the model work's figures (requests, cache, seconds)
    timings: dict[str, Any] = field(default_factory=dict)  # start_time, end_time, scoring_seconds
    prompts: dict[str, Any] = field(default_factory=dict)  # system instruction and chat template, with hashes
    stopped: str | None = None  # why the run stopped early (a backend gave up for good)
    cache_note: str | None = None  # whether answers were cached, and why
    resume_note: tuple[str, str] | None = None  # (colour, line): what rerunning the same command does
    output_files: list[Path] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        """Some selected documents have no score (see `not_scored`)."""
        return bool(self.not_scored) or self.stopped is not None

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The documents that ran and could not be scored."""
        return [e for e in self.not_scored if e["status"] == ERROR]

    @property
    def passed(self) -> bool:
        """What the exit code says: every gate passed, every document scored, nothing stopped."""
        return not self.partial and all(g.passed for g in self.gates)

    def metric(self, task: str, key: str) -> float | None:
        """A task's or group's value, by lm-eval's key (`acc,none`) or the bare metric (`acc`)."""
        entry = self.results.entries.get(task)
        if entry is None:
            return None
        if key in entry.values:
            return entry.values[key]
        return next((v for k, v in entry.values.items() if k.split(",")[0] == key), None)
