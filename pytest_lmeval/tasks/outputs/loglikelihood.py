"""Log-likelihood of one continuation after the prompt (LAMBADA): its perplexity, and whether
greedy decoding produces it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...core.requests import DocRequests, Request
from ...scoring import metrics
from .base import OutputType, text_target

if TYPE_CHECKING:
    from ..task import Task


class Loglikelihood(OutputType):
    name = "loglikelihood"
    default_metrics = ("perplexity", "acc")
    builtin_metrics = ("perplexity", "acc")

    def build(self, task: Task, doc_id: int, contexts: list[str], target: Any) -> DocRequests:
        continuation = text_target(task, target, doc_id, "text")
        return DocRequests(task.name, doc_id, (Request.loglikelihood(contexts[0], continuation),), (), target, None,
                           contexts[0])  # fmt: skip

    def compute(self, task: Task, work: DocRequests, results: list[Any], wanted: list[str]) -> tuple[dict, Any]:
        ll, greedy = results[0]
        return metrics.score_loglikelihood(float(ll), bool(greedy), wanted), (float(ll), bool(greedy))
