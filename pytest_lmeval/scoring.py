"""Turning a document's answers into its scores and its sample record.

The record is plain JSON data: it rides on the item's test report (so it crosses xdist's wire
unchanged) and is all the controller needs to aggregate and to write samples.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from . import metrics
from .requests import Request, Response
from .tasks import DocRequests, Task


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class ScoredDoc:
    """What a benchmark's test function receives: one document, scored."""

    task: str
    doc_id: int
    metrics: dict[str, float]
    record: dict[str, Any]
    item_outcome: str = "scored"

    @property
    def correct(self) -> bool | None:
        """Whether the model got it right, by the first 0/1 metric; None if there is none."""
        for name in ("acc", "exact_match", "acc_norm"):
            if name in self.metrics:
                return self.metrics[name] == 1.0
        return None

    def check(self) -> None:
        """Pass when scored; with --item-outcome=correct, fail when the answer is wrong."""
        if self.item_outcome == "correct" and self.correct is False:
            shown = ", ".join(f"{k}={v:g}" for k, v in self.metrics.items())
            raise AssertionError(f"{self.task}-{self.doc_id} answered wrong ({shown})")


def score(task: Task, work: DocRequests, answers: dict[Request, Response], log_sample: bool) -> ScoredDoc:
    responses = [answers[r] for r in work.requests]
    cfg = task.config
    if cfg.output_type == "multiple_choice":
        lls = [float(ll) for ll, _ in responses]
        values = metrics.score_multiple_choice(lls, work.choices, work.target, cfg.metrics)
    else:
        ll, greedy = responses[0]
        values = metrics.score_loglikelihood(float(ll), bool(greedy), cfg.metrics)
    record: dict[str, Any] = {"task": work.task, "doc_id": work.doc_id, "metrics": values}
    if log_sample:
        record["sample"] = sample_record(task, work, responses, values)
    return ScoredDoc(work.task, work.doc_id, values, record)


def sample_record(task: Task, work: DocRequests, responses: list[Response], values: dict[str, float]) -> dict[str, Any]:
    """One line of samples/<task>.jsonl, in lm-eval's sample schema."""
    doc = task.docs[work.doc_id]
    resps = [[[f"{float(ll)}", f"{bool(g)}"]] for ll, g in responses]
    target = work.target
    if task.config.output_type == "multiple_choice" and isinstance(target, int):
        target_text = work.choices[target] if 0 <= target < len(work.choices) else str(target)
    else:
        target_text = str(target)
    return {
        "doc_id": work.doc_id,
        "doc": doc,
        "target": target_text,
        "arguments": {
            f"gen_args_{i}": {f"arg_{j}": arg for j, arg in enumerate(r.args)} for i, r in enumerate(work.requests)
        },
        "resps": resps,
        "filtered_resps": [r[0] for r in resps],
        "filter": "none",
        "metrics": list(values),
        **values,
        "doc_hash": sha256(json.dumps(doc, indent=2, default=str, ensure_ascii=False)),
        "prompt_hash": sha256(work.requests[0].args[0]),
        "target_hash": sha256(str(work.target)),
    }
