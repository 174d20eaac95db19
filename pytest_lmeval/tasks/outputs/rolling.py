"""Rolling log-likelihood of a whole document (WikiText), scored in windows of the model's
context: word and byte perplexity, bits per byte."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...core.requests import DocRequests, Request
from ...scoring import metrics
from .base import OutputType, text_target

if TYPE_CHECKING:
    from ..task import Task


class Rolling(OutputType):
    name = "loglikelihood_rolling"
    default_metrics = ("word_perplexity", "byte_perplexity", "bits_per_byte")
    builtin_metrics = default_metrics
    needs_prompt = False

    def build(self, task: Task, doc_id: int, contexts: list[str], target: Any) -> DocRequests:
        text = text_target(task, target, doc_id, "the text to score")
        return DocRequests(task.name, doc_id, (Request.loglikelihood_rolling(text),), (), target, None, contexts[0])

    def compute(self, task: Task, work: DocRequests, results: list[Any], wanted: list[str]) -> tuple[dict, Any]:
        ll = float(results[0])
        return metrics.score_rolling(ll, work.target, wanted), ll
