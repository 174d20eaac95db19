"""How a declared task is scored: `metric(...)`, `judge(...)`, `regex(...)`, and the metric and
filter lists a declaration compiles them into.

Metrics and filters are written the same way whatever the output type, so they are declared
here once and turned into lm-eval's `metric_list` and `filter_list` entries, which the config
validates as it validates a YAML task's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.errors import LmevalError
from ..scoring.filters import Filter
from .declare_data import Doc
from .judged_metrics import STRATEGIES, Judge


@dataclass(frozen=True)
class Metric:
    """A metric written as a function of the document and the model's answer. The answer is
    what the output type produces: the choices' log-likelihoods for multiple choice, the
    filtered text for generation, `(loglikelihood, is_greedy)` for loglikelihood, the
    document's log-likelihood for rolling tasks. `aggregation` is a built-in aggregation name
    ("mean", "perplexity", "weighted_perplexity", "bits_per_byte", ...)."""

    fn: Callable[[Doc, Any], Any]
    name: str
    higher_is_better: bool = True
    aggregation: str = "mean"

    def __call__(self, doc: Doc, answer: Any) -> Any:
        """Scores as its function does, so a YAML task's `fn: !function helpers.NAME` may name
        a Metric (a judged one: `NAME = lm.judge(...)`)."""
        return self.fn(doc, answer)


def metric(
    fn: Callable[[Doc, Any], Any] | None = None,
    *,
    name: str | None = None,
    higher_is_better: bool = True,
    aggregation: str = "mean",
) -> Metric | Callable[[Callable[[Doc, Any], Any]], Metric]:
    """Use as `@metric` or `metric(fn, name=..., higher_is_better=False)`."""

    def wrap(f: Callable[[Doc, Any], Any]) -> Metric:
        return Metric(f, name or f.__name__, higher_is_better, aggregation)

    return wrap(fn) if fn is not None else wrap


def judge(
    name: str = "judge",
    *,
    question: str | Callable[[Doc], Any] = "question",
    reference: str | Callable[[Doc], Any] | None = "answer",
    template: str | None = None,
    verdicts: Mapping[str, float] | None = None,
    scale: float | None = None,
    strategy: str = "llm",
    rule: Callable[[Doc, Any], Any] | None = None,
    retries: int = 1,
    max_tokens: int = 16,
) -> Metric:
    """A metric scored by the run's judge model (`--judge-model`): it is shown the `question`
    and `reference` fields (names or functions of the document) and the model's answer, in
    `template` (a format string over {question}, {reference}, {answer}, {scale}; the default
    asks for CORRECT or INCORRECT), and its reply is read as one of `verdicts` (word -> score,
    default CORRECT 1, INCORRECT 0) or, with `scale=N`, a rating [[x]] scored x / N. A reply
    without one is asked again `retries` times, then the document is unscored with the reason.
    `strategy` is what `--judge-strategy auto` means here: "llm" (always judge), "rule" (only
    `rule(doc, answer)`, by default the answer equals the reference), "llm_recall" (judge only
    where the rule says wrong). See tasks/judged_metrics.py and features/judging.py."""
    if strategy not in STRATEGIES or strategy == "auto":
        raise LmevalError(f"judge(): strategy must be 'llm', 'rule' or 'llm_recall', got {strategy!r}")
    if retries < 0 or max_tokens < 1:
        raise LmevalError("judge(): retries must be 0 or more and max_tokens at least 1")
    if scale is not None and scale <= 0:
        raise LmevalError(f"judge(): scale must be positive, got {scale!r}")
    words = tuple((str(k), float(v)) for k, v in verdicts.items()) if verdicts is not None else None
    if words is not None and not words:
        raise LmevalError("judge(): verdicts must name at least one word")
    fn = Judge(name, question, reference, template, *((words,) if words else ()), scale=scale, strategy=strategy,
               rule=rule, retries=retries, max_tokens=max_tokens)  # fmt: skip
    return Metric(fn, name, True, "mean")


def regex(pattern: str, *, group_select: int = 0, fallback: str = "[invalid]") -> dict[str, Any]:
    """Answer extraction: the `group_select`-th match of `pattern` (lm-eval's regex filter)."""
    return {"function": "regex", "regex_pattern": pattern, "group_select": group_select, "fallback": fallback}


def _text_filter(fn: Callable[[str], str]) -> type[Filter]:
    class _Step(Filter):
        def apply(self, resps, docs):
            return [[fn(r) for r in answers] for answers in resps]

    _Step.__name__ = _Step.__qualname__ = getattr(fn, "__name__", "filter")
    return _Step


def filter_entries(filters: Mapping[str, Sequence[Any]] | None) -> list[dict[str, Any]] | None:
    """Named pipelines of steps: a built-in name ("take_first", "lowercase"...), a `regex(...)`,
    or a function from answer text to text."""
    if filters is None:
        return None
    out = []
    for name, steps in filters.items():
        built = []
        for step in steps:
            if isinstance(step, str):
                built.append({"function": step})
            elif isinstance(step, dict):
                built.append(dict(step))
            elif callable(step):
                built.append({"function": _text_filter(step)})
            else:
                raise LmevalError(f"filter {name!r}: a step is a name, regex(...) or a function, got {step!r}")
        out.append({"name": name, "filter": built})
    return out


def metric_entries(metrics: Iterable[str | Metric | Callable]) -> list[dict[str, Any]]:
    """The `metric_list` entries of a declaration's metrics: built-in names, Metrics, or plain
    functions (a mean, higher is better)."""
    out = []
    for m in metrics:
        if isinstance(m, str):
            out.append({"metric": m})
        elif isinstance(m, Metric):
            out.append(
                {"metric": m.name, "fn": m.fn, "aggregation": m.aggregation, "higher_is_better": m.higher_is_better}
            )
        elif callable(m):
            out.append({"metric": m.__name__, "fn": m, "aggregation": "mean", "higher_is_better": True})
        else:
            raise LmevalError(f"metrics: each is a built-in name or a function, got {m!r}")
    return out
