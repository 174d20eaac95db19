"""The perturbation feature (`--perturb`, `@pytest.mark.lmeval_perturb`) as a plugin: which
perturbations the run asked for, and what they did to the scores.

The perturbations themselves (HELM's typos, casing, contractions, ...) and how a perturbed
document's requests are built live in perturbation.py; this plugin adds their part to the run's
result: each task's metrics under each perturbation and their worst case (`acc@typos`,
`acc@robust`, and over the fairness perturbations `acc@fairness`, shown after the metric they
perturb), a group's pooled over its members, the
documents whose answer flipped, and the tasks that could not be perturbed, with why."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import pytest

from ..scoring import metrics
from ..scoring.aggregate import Results, combine, interleave, split_key
from . import perturbation as perturb

if TYPE_CHECKING:
    from ..run.result import RunResult

MAX_SHOWN = 20  # flipped documents named per perturbation in the terminal


class Robustness:
    """The run's perturbations (`--perturb`), kept under its own stash key."""

    stash_key = pytest.StashKey["Robustness"]()

    def __init__(self, config: pytest.Config) -> None:
        self.selected: tuple[str, ...] = perturb.selected(config)

    @classmethod
    def of(cls, config: pytest.Config) -> Robustness:
        return config.stash[cls.stash_key]

    def for_function(self, marked: list[str]) -> tuple[str, ...]:
        """The perturbations of a benchmark function's documents: the run's, then its marks'."""
        own = perturb.parse_names(marked, perturb.MARK)
        return self.selected + tuple(n for n in own if n not in self.selected)

    @pytest.hookimpl(tryfirst=True)  # before gates, which may bound a perturbed metric
    def pytest_lmeval_conclude(self, result: RunResult) -> None:
        if result.perturbed:
            result.perturbed.sort(key=lambda r: (r["task"], r["doc_id"], r["perturbation"]))
            add_robustness(result.results, result.records, result.perturbed, result.tasks)
        if result.results.robust:
            result.sections["robustness"] = {name: r.to_json() for name, r in result.results.robust.items()}
            result.lines += _flipped_lines(result.results)
        refused = perturb.not_perturbed(result.tasks, bool(self.selected))
        if refused:
            result.sections["not_perturbed"] = refused
            result.lines += _refused_lines(refused)


def add_robustness(
    results: Results, records: list[dict[str, Any]], perturbed: list[dict[str, Any]], tasks: dict
) -> None:
    """Each task's metrics under its perturbations and their worst case, and a group's: each of
    its metrics under each perturbation, over its members that have it, weighted by size with
    the pooled stderr, as the group's own metric is (innermost first)."""
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in perturbed:
        by_task[rec["task"]].append(rec)
    for name in results.task_names:
        if not by_task.get(name):
            continue
        own = [r for r in records if r["task"] == name]
        robust = perturb.robustness(tasks[name], own, by_task[name], metrics.aggregate)
        if robust is None:
            continue
        results.robust[name] = robust
        interleave(results.entries[name], robust.values, [*robust.perturbations, perturb.ROBUST, perturb.FAIR])
    derived = [*perturb.PERTURBATIONS, perturb.ROBUST, perturb.FAIR]
    for group in reversed(results.group_names):
        entry = results.entries[group]
        members = [results.entries[m] for m in results.group_subtasks.get(group, []) if m in results.entries]
        found: dict[str, tuple[float, float | str]] = {}
        for key in entry.values:
            metric, filter_name = split_key(key)
            for name in derived:
                extra = f"{metric}@{name},{filter_name}"
                have = [m for m in members if extra in m.values]
                if have:
                    found[extra] = combine(
                        [m.values[extra] for m in have], [m.stderrs[extra] for m in have], [m.n for m in have], True
                    )
        interleave(entry, found, derived)


def _flipped_lines(results: Results) -> list[str]:
    """Per perturbed task, the documents whose answer flipped under each perturbation."""
    lines = []
    for name, robust in results.robust.items():
        if robust.metric is None:
            continue
        parts = []
        for perturbation, flips in robust.flipped.items():
            ids = flips["to_wrong"] + flips["to_right"]
            shown = ", ".join(ids[:MAX_SHOWN]) + (" ..." if len(ids) > MAX_SHOWN else "")
            parts.append(
                f"{perturbation}: {len(flips['to_wrong'])} right to wrong, {len(flips['to_right'])} wrong to right"
                + (f" ({shown})" if ids else "")
            )
        lines.append(f"lmeval robustness: {name} ({robust.documents} documents, {robust.metric}): " + "; ".join(parts))
    return lines


def _refused_lines(refused: dict[str, str]) -> list[str]:
    by_reason: dict[str, list[str]] = {}
    for name, reason in refused.items():
        by_reason.setdefault(reason, []).append(name)
    parts = [f"{', '.join(names)} ({reason})" for reason, names in by_reason.items()]
    return ["lmeval robustness: not perturbed: " + "; ".join(parts)]
