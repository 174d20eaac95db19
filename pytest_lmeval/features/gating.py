"""The gates feature: `--threshold`, `--gates FILE` and `--baseline` with `--max-drop`, judged
when the run concludes, each a named pass/fail entry in the result (and so in the terminal,
JUnit XML, results.json and the exit code: gate_tests.py logs each as a test of its own)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..core.errors import LmevalError
from .baseline import baseline_gates, nothing_paired_gate
from .baseline_run import doc_hash, load_baseline
from .gates import Bound, Gate, check_bounds, parse_gates_file, parse_threshold
from .paired_comparison import compare, rules_of, scopes_of

if TYPE_CHECKING:
    from ..run.result import RunResult


class Gating:
    """The run's gates, parsed when the run starts (a malformed one is an error before any
    model loads) and judged on the controller after every document ran."""

    stash_key = pytest.StashKey["Gating"]()

    def __init__(
        self,
        thresholds: tuple[str, ...] = (),
        gates_file: Path | None = None,
        baseline: Path | None = None,
        max_drop: float = 0.0,
        alpha: float = 0.05,
    ) -> None:
        self.bounds: list[Bound] = [parse_threshold(t) for t in thresholds]
        if gates_file is not None:
            self.bounds += parse_gates_file(gates_file)
        self.baseline = baseline
        self.max_drop = max_drop
        self.alpha = alpha

    @pytest.hookimpl(trylast=True)  # after the features that add metrics a gate may bound
    def pytest_lmeval_conclude(self, result: RunResult) -> None:
        gates = check_bounds(self.bounds, result.results, result.sections)
        for gate in gates:  # a gate on a task records the settings the task ran with
            task = result.tasks.get(gate.figures.get("task", ""))
            if task is not None:
                gate.figures["ran_with"] = {
                    "num_fewshot": task.num_fewshot,
                    "documents": len(task.docs),
                    **task.config.extra.get("task_settings", {}),
                }
        if self.baseline is not None:
            gates += self._baseline_gates(result)
        result.gates = gates

    def _baseline_gates(self, result: RunResult) -> list[Gate]:
        try:
            result.baseline = load_baseline(self.baseline)
        except (LmevalError, OSError, ValueError, KeyError) as exc:  # a broken baseline fails its gate, visibly
            return [Gate("baseline", False, f"cannot read the baseline: {exc}", {"baseline": str(self.baseline)})]
        after = {(r["task"], r["doc_id"]): r["metrics"] for r in result.records}
        result.comparisons = compare(
            result.baseline,
            after,
            doc_hashes(result),
            scopes_of(result.results, result.registry),
            rules_of(result.tasks),
            alpha=self.alpha,
        )
        result.sections["baseline"] = {
            **result.baseline.info,
            "comparisons": [c.to_json() for c in result.comparisons],
        }
        if not result.comparisons:
            return [nothing_paired_gate(result.baseline)]
        return baseline_gates(result.comparisons, self.max_drop, self.alpha)


def doc_hashes(result: RunResult) -> dict[tuple[str, int], str]:
    """Each scored document's doc_hash, to tell a baseline's same-numbered but changed documents."""
    return {(r["task"], r["doc_id"]): doc_hash(result.tasks[r["task"]].docs[r["doc_id"]]) for r in result.records}
