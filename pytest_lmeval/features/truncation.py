"""Inputs cut to the model's length, counted: a prompt longer than the model's context keeps
its last tokens (lm-eval's rule: the start of the prompt is dropped), which changes what the
model was asked. Each such document's record and sample lines say so, results.json counts them
per task, and the terminal says how many documents of which task were cut."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from ..core.requests import Request

if TYPE_CHECKING:
    from ..engine.answering import EngineStats
    from ..run.result import RunResult
    from ..tasks.benchmark import Doc

KEY = "truncated"  # the per-document record's (and its sample lines') key
SIDE = "left"  # the start of the input is dropped


class Truncation:
    """The requests this process's backend cut (filled as the engine answers)."""

    stash_key = pytest.StashKey["Truncation"]()

    def __init__(self) -> None:
        self.cut: dict[Request, tuple[int, int]] = {}

    def pytest_lmeval_answered(self, stats: EngineStats) -> None:
        self.cut.update(stats.truncated)

    def pytest_lmeval_document_record(self, doc: Doc, record: dict[str, Any]) -> None:
        cut = [
            {"request": i, "tokens": self.cut[r][0], "kept": self.cut[r][1], "side": SIDE}
            for i, r in enumerate(doc.work.requests)
            if r in self.cut
        ]
        if cut:
            record[KEY] = cut

    def pytest_lmeval_conclude(self, result: RunResult) -> None:
        per_task: dict[str, dict[str, Any]] = {}
        for rec in result.records + result.perturbed:
            cut = rec.get(KEY)
            if not cut:
                continue
            entry = per_task.setdefault(
                rec["task"], {"documents": 0, "longest_tokens": 0, "kept_tokens": None, "side": SIDE}
            )
            entry["documents"] += 1
            entry["longest_tokens"] = max(entry["longest_tokens"], *(c["tokens"] for c in cut))
            kept = min(c["kept"] for c in cut)
            entry["kept_tokens"] = kept if entry["kept_tokens"] is None else min(entry["kept_tokens"], kept)
        if not per_task:
            return
        result.sections[KEY] = per_task
        scored = {name: result.results.entries[name].n for name in per_task if name in result.results.entries}
        for name, e in per_task.items():
            result.lines.append(
                f"lmeval truncation: {name}: {e['documents']} of {scored.get(name, '?')} documents cut to "
                f"{e['kept_tokens']} tokens (longest {e['longest_tokens']}), their start dropped"
            )
