"""Multiple choice: one log-likelihood request per answer (or, for multiple-input tasks such as
Winogrande, one per context, all with the same continuation); the chosen answer is the most
likely one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...core.errors import LmevalError, NotScored
from ...core.requests import DocRequests, Request, Response
from ...scoring import lmeval_metrics, metrics
from ...scoring.calibration import softmax_confidence
from .base import OutputType, target_fault, text_target

if TYPE_CHECKING:
    from ..config import TaskConfig
    from ..task import Task


class MultipleChoice(OutputType):
    name = "multiple_choice"
    default_metrics = ("acc", "acc_norm")
    builtin_metrics = ("acc", "acc_norm", "acc_bytes", "acc_mutual_info", "exact_match", "likelihood")

    def check(self, cfg: TaskConfig, where: str) -> None:
        if cfg.doc_to_choice is None:
            raise LmevalError(f"{where}: multiple_choice needs doc_to_choice")

    def build(self, task: Task, doc_id: int, contexts: list[str], target: Any) -> DocRequests:
        cfg = task.config
        given = task.field("doc_to_choice", cfg.doc_to_choice, doc_id)
        if given is not None and not isinstance(given, (list, tuple)):
            raise LmevalError(
                f"task {task.name!r}: doc_to_choice must give a list of strings on document {doc_id}, "
                f"got {type(given).__name__}"
            )
        choices = tuple(given or ())
        if not all(isinstance(c, str) for c in choices):
            raise LmevalError(f"task {task.name!r}: doc_to_choice must give a list of strings on document {doc_id}")
        if not choices:  # the document's own fault: its item fails with the reason (see compute)
            gold = task.field("doc_to_text", cfg.doc_to_text, doc_id) if task.multiple_input else None
            return DocRequests(task.name, doc_id, (), (), target, gold, contexts[0] if contexts else "")
        delim = task.continuation_delimiter()
        gold = None
        if task.multiple_input:
            continuation = text_target(task, target, doc_id, "the continuation")
            gold = task.field("doc_to_text", cfg.doc_to_text, doc_id)
            requests = [Request.loglikelihood(ctx, f"{delim}{continuation}") for ctx in contexts]
        else:
            requests = [Request.loglikelihood(contexts[0], f"{delim}{c}") for c in choices]
        unconditional = 0
        if "acc_mutual_info" in cfg.metrics:
            requests += [Request.loglikelihood("", f"{delim}{c}") for c in choices]
            unconditional = len(choices)
        return DocRequests(task.name, doc_id, tuple(requests), choices, target, gold, contexts[0], unconditional)

    def _lls(self, work: DocRequests, results: list[Any]) -> tuple[list[float], list[bool], list[float] | None]:
        n = len(results) - work.unconditional
        lls = [float(r[0]) for r in results[:n]]
        greedy = [bool(r[1]) for r in results[:n]]
        unconditional = [float(r[0]) for r in results[n:]] if work.unconditional else None
        return lls, greedy, unconditional

    def compute(self, task: Task, work: DocRequests, results: list[Any], wanted: list[str]) -> tuple[dict, Any]:
        target = work.gold if task.multiple_input else work.target
        fault = _no_choices(work) or target_fault(target, work.choices, _target_field(task))
        if fault is not None:
            raise NotScored(fault)
        lls, greedy, unconditional = self._lls(work, results)
        ours = [m for m in wanted if m not in lmeval_metrics.CHOICE_METRICS]
        out = metrics.score_multiple_choice(lls, work.choices, target, ours, greedy=greedy, unconditional=unconditional)
        if len(ours) < len(wanted):  # lm-eval's f1, mcc, brier_score: aggregated over all documents
            gold = (
                [metrics.gold_index(t, work.choices) for t in target]
                if isinstance(target, list)
                else metrics.gold_index(target, work.choices)
            )
            values = lmeval_metrics.choice_values(wanted, gold, lls)
            out = {m: out[m] if m in out else values[m] for m in wanted}
        return out, lls

    def answer(self, task: Task, work: DocRequests, responses: list[Response]) -> Any:
        """The chosen answer's text (multiple input: the chosen context's index)."""
        fault = _no_choices(work)
        if fault is not None:
            raise NotScored(fault)
        lls, _, _ = self._lls(work, responses)
        best = max(range(len(lls)), key=lls.__getitem__)
        return best if task.multiple_input else work.choices[best]

    def confidence(self, work: DocRequests, responses: list[Response]) -> float:
        """The softmax probability of the chosen (most likely) answer, HELM's confidence
        for calibration (see calibration.py)."""
        lls, _, _ = self._lls(work, responses)
        return softmax_confidence(lls)


def _no_choices(work: DocRequests) -> str | None:
    if work.choices:
        return None
    return "no choices: doc_to_choice gave an empty list, so there is nothing to choose from"


def _target_field(task: Task) -> str:
    return "target (the right context's index)" if task.multiple_input else "target"
