"""What every output type answers: how a document becomes requests, how answers become the
document's metrics, which metrics it has, and what its samples show.

Tasks, scoring, reports and the declaration API ask a task's output type (`task.output`)
instead of switching on `output_type` themselves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from ...core.errors import LmevalError
from ...core.requests import DocRequests, Request, Response

if TYPE_CHECKING:
    from ..config import TaskConfig
    from ..task import Task


class OutputType(ABC):
    name: ClassVar[str]
    default_metrics: ClassVar[tuple[str, ...]] = ()
    builtin_metrics: ClassVar[tuple[str, ...]] = ()
    needs_prompt: ClassVar[bool] = True  # doc_to_text is required

    # -- the declaration ----------------------------------------------------------------------
    def check(self, cfg: TaskConfig, where: str) -> None:  # noqa: B027 - most types refuse nothing
        """Raise for what this output type cannot run (called once per task config)."""

    def check_metric(self, entry: dict[str, Any], where: str) -> None:  # noqa: B027 - no options to refuse
        """Raise for a metric_list entry's options this output type does not take."""

    def generation_kwargs(self, cfg: TaskConfig) -> dict[str, Any] | None:
        """The config's generation arguments, normalised (only generation has any)."""
        return cfg.generation_kwargs

    def run_kwargs(self, cfg: TaskConfig, cli: dict[str, Any] | None) -> dict[str, Any]:
        """The generation arguments a run uses (--gen-kwargs merged, for generation)."""
        return dict(cfg.generation_kwargs or {})

    # -- requests -----------------------------------------------------------------------------
    @abstractmethod
    def build(self, task: Task, doc_id: int, contexts: list[str], target: Any) -> DocRequests:
        """The document's requests (its prompt contexts and target already rendered)."""

    # -- scoring ------------------------------------------------------------------------------
    def instances(self, responses: list[Response]) -> list[list[Response]]:
        """lm-eval's instances: each request is its own, answered once."""
        return [[r] for r in responses]

    @abstractmethod
    def compute(self, task: Task, work: DocRequests, results: list[Any], wanted: list[str]) -> tuple[dict, Any]:
        """The built-in metrics in `wanted` for one filter's values, and the answer that
        metrics written as functions receive."""

    def answer(self, task: Task, work: DocRequests, responses: list[Response]) -> Any:
        """What a benchmark body sees as `doc.answer`."""
        return responses[0]

    # -- reports ------------------------------------------------------------------------------
    def sample_requests(self, work: DocRequests) -> list[Request]:
        """The requests a sample line shows as its arguments."""
        return list(work.requests)

    def run_config(self, task: Task) -> dict[str, Any]:
        """Extra keys of the task's results.json config, as it ran."""
        return {}


def text_target(task: Task, target: Any, doc_id: int, what: str) -> str:
    if not isinstance(target, str):
        raise LmevalError(f"task {task.name!r}: doc_to_target must give {what} on document {doc_id}")
    return target


def target_fault(target: Any, choices: tuple[str, ...], what: str = "target") -> str | None:
    """Why a target cannot be scored against the document's choices (one line), or None. A
    negative index is refused, not read from the end: lm-eval would score such a document as
    wrong without a word, and -1 is a common "no label" mark in data sets' test splits."""
    n = len(choices)
    for gold in target if isinstance(target, list) else [target]:
        if isinstance(gold, str):
            if gold not in choices:
                return f"{what} {gold!r} is not one of the document's {n} choices"
        elif not isinstance(gold, int):
            return f"{what} {gold!r} is neither the index of a choice nor its text"
        elif not 0 <= gold < n:
            return f"{what} {gold} is out of range for the document's {n} choices (0 to {n - 1})"
    if isinstance(target, list) and not target:
        return f"{what} is an empty list: the document has no right answer"
    return None
