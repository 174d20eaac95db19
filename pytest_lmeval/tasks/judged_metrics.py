"""A judged metric as a benchmark declares it (`lm.judge(...)`): what the judge is shown, how its
reply reads, and what its strategy leaves to a rule.

The declaration lives with the tasks because a task's metric_list holds it, and tasks sit below
the features. The judge phase (features/judging.py) asks the judge model and publishes its
verdicts through `use_verdicts`; the metric only reads them back, so it never depends on the
phase that runs it.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, Protocol

from ..core.errors import LmevalError

# EvalScope's judge strategies: `rule` never asks the judge, `llm` always does, `llm_recall`
# asks it only where the rule says wrong, `auto` lets each benchmark's metric decide.
STRATEGIES = ("auto", "rule", "llm", "llm_recall")

TEMPLATE = """\
You are grading an answer to a question against a reference answer. The answer is correct \
when it says what the reference says, in any words; extra detail that does not contradict the \
reference is fine.

Question: {question}
Reference answer: {reference}
Answer to grade: {answer}

Reply with one word: CORRECT or INCORRECT."""
RATING_TEMPLATE = """\
Rate how well the answer answers the question, from 0 (useless or wrong) to {scale} (fully \
correct and complete).

Question: {question}
Answer to rate: {answer}

Reply with the rating in double brackets, for example [[{scale}]]."""
RATING = re.compile(r"\[\[\s*(-?\d+(?:\.\d+)?)\s*\]\]")
# How a reply echoes the instruction rather than judging: the verdict words listed together,
# joined by "or", a comma or a slash ("CORRECT or INCORRECT", "'CORRECT'/'INCORRECT'"), and the
# rating template's example ("for example [[10]]").
_LIST_SEPARATOR = r"(?:,\s*or\b|,|/|\||\bor\b)"
_QUOTES = r"[\"'*`\u2018\u2019\u201c\u201d]*"
_EXAMPLE_RATING = re.compile(r"(?:for example|for instance|e\.g\.|such as|like)[:,]?\s*" + RATING.pattern, re.I)


class Verdicts(Protocol):
    """What a judged metric needs from the judge phase: the run's strategy, and the score the
    judge gave an answer (the phase raises its own 'not scored' error when it has none)."""

    @property
    def strategy(self) -> str | None: ...

    def score(self, judge: Judge, doc: Mapping[str, Any], answer: Any) -> float: ...


_VERDICTS: ContextVar[Verdicts | None] = ContextVar("lmeval_judge_verdicts", default=None)


def use_verdicts(verdicts: Verdicts) -> Token[Verdicts | None]:
    """Make `verdicts` the ones judged metrics read (returns the token that `stop_using` takes)."""
    return _VERDICTS.set(verdicts)


def stop_using(token: Token[Verdicts | None]) -> None:
    _VERDICTS.reset(token)


def _normal(text: Any) -> str:
    return " ".join(str(text).lower().strip().strip(string.punctuation + " ").split())


def _field(spec: Any, doc: Mapping[str, Any], what: str) -> str:
    if spec is None:
        return ""
    if callable(spec):
        return str(spec(doc))
    if spec not in doc:
        raise LmevalError(f"judge: the document has no field {spec!r} for the {what} (fields: {', '.join(doc)})")
    return str(doc[spec])


@dataclass(frozen=True, eq=False)
class Judge:
    """A metric scored by the judge model; `lm.judge(...)` builds it (see there)."""

    name: str = "judge"
    question: Any = "question"  # a field name or a function of the document
    reference: Any = "answer"  # None: no reference (a rating, with `scale`)
    template: str | None = None
    verdicts: tuple[tuple[str, float], ...] = (("CORRECT", 1.0), ("INCORRECT", 0.0))
    scale: float | None = None  # a rating [[x]] of 0..scale instead of a verdict
    strategy: str = "llm"  # what `auto` means for this metric
    rule: Callable[[Mapping[str, Any], Any], Any] | None = None
    retries: int = 1
    max_tokens: int = 16

    # -- the judging prompt and the reply --------------------------------------------------
    def prompt(self, doc: Mapping[str, Any], answer: Any, attempt: int = 0) -> str:
        values = {
            "question": _field(self.question, doc, "question"),
            "reference": _field(self.reference, doc, "reference"),
            "answer": str(answer).strip(),
            "scale": f"{self.scale:g}" if self.scale is not None else "",
        }
        template = self.template or (RATING_TEMPLATE if self.scale is not None else TEMPLATE)
        text = template.format_map(values)
        if attempt:
            text += f"\n\nYour previous reply could not be read. Reply with exactly {self.expected}, nothing else."
        return text

    def key(self, doc: Mapping[str, Any], answer: Any) -> tuple[Any, ...]:
        """The verdicts' key for this answer: the judging prompt, and how this judge reads
        replies (two judged metrics may send the same prompt and read the reply differently)."""
        return (self.prompt(doc, answer), self.verdicts, self.scale, self.retries, self.max_tokens)

    @property
    def expected(self) -> str:
        if self.scale is not None:
            return f"a rating between 0 and {self.scale:g} in double brackets, like [[{self.scale:g}]]"
        return " or ".join(word for word, _ in self.verdicts)

    def parse(self, reply: str) -> float | None:
        """The score a reply gives, or None when it gives none or is ambiguous (the judge phase
        then asks again). An echoed instruction is not a verdict: verdict words listed together
        ("CORRECT or INCORRECT", "CORRECT/INCORRECT") and a rating given as the instruction's
        example ("for example [[10]]") are set aside first. What is left must name exactly one
        verdict (whole words, any case, said once or repeated; the longer word where two start
        at the same place), or one rating [[x]] within 0..scale; a reply naming two different
        ones ("CORRECT ... the answer is incorrect") is ambiguous."""
        if self.scale is not None:
            ratings = {float(m.group(1)) for m in RATING.finditer(_EXAMPLE_RATING.sub(" ", reply))}
            if len(ratings) != 1:
                return None
            value = ratings.pop()
            return value / self.scale if 0 <= value <= self.scale else None
        words = sorted((word for word, _ in self.verdicts), key=len, reverse=True)
        one = rf"(?<!\w)(?:{'|'.join(re.escape(w) for w in words)})(?!\w)"
        quoted = rf"{_QUOTES}{one}{_QUOTES}"
        listed = re.compile(rf"{quoted}(?:\s*{_LIST_SEPARATOR}\s*{quoted})+", re.IGNORECASE)
        said = {m.group(0).lower() for m in re.finditer(one, listed.sub(" ", reply), re.IGNORECASE)}
        if len(said) != 1:
            return None
        word = said.pop()
        return next(score for w, score in self.verdicts if w.lower() == word)

    def rule_score(self, doc: Mapping[str, Any], answer: Any) -> float:
        """The rule's score: the metric's own `rule`, else the answer equals the reference."""
        if self.rule is not None:
            return float(self.rule(doc, answer))
        if self.reference is None:
            raise LmevalError(f"judge {self.name!r}: the rule strategy needs a reference or a rule=")
        return float(_normal(answer) == _normal(_field(self.reference, doc, "reference")))

    # -- as a metric ------------------------------------------------------------------------
    def asks(self, strategy: str | None, doc: Mapping[str, Any], answer: Any) -> bool:
        """Whether the judge is asked about this answer under the run's strategy."""
        chosen = self.strategy if strategy in (None, "auto") else strategy
        if chosen == "rule":
            return False
        if chosen == "llm_recall":
            return self.rule_score(doc, answer) == 0
        return True

    def __call__(self, doc: Mapping[str, Any], answer: Any) -> float:
        verdicts = _VERDICTS.get()
        if not self.asks(verdicts.strategy if verdicts is not None else None, doc, answer):
            return self.rule_score(doc, answer)
        if verdicts is None:  # scored outside a run's judge phase
            raise LmevalError(
                f"metric {self.name!r} is scored by a judge model: pass --judge-model BACKEND:NAME "
                "(or --judge-strategy rule to score by its rule alone)"
            )
        return verdicts.score(self, doc, answer)
