"""A benchmark is a test function: `@benchmark(task, ...)` marks it, the plugin parametrizes it
with one item per document, and the function receives that document with the model's answers.

The requests come from the task declarations at collection time (never from the body), so the
engine batches and caches them before any body runs. The body runs in the call phase: it
scores the document (`doc.score()`, the default) and may assert on it; a failed assertion fails
that item in pytest's own result and counts in the task's `pass_rate`, while the document's
other metrics still count. When the body does not call `doc.score()`, the plugin scores the
document after the body returns.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest

from ..core.requests import DocRequests, Response
from ..scoring.document import ScoredDoc, score
from .config import GroupConfig, TaskConfig
from .declare import declared
from .task import Task

MARK = "lmeval_benchmark"
PERTURB_MARK = "lmeval_perturb"  # perturbations of each document (features/perturbation.py)
PASS_RATE = "pass_rate,none"


def benchmark(
    *tasks: TaskConfig | GroupConfig | str, pass_rate: bool | None = None, perturb: Sequence[str] = ()
) -> Callable:
    """Run the decorated test once per document of each task (a declaration, a group, or the
    name of a task, group or tag the registry knows, lm-eval's catalogue included).

    `pass_rate` adds the share of documents whose body passed as a metric; by default it is
    on exactly when the body contains an `assert`. `perturb` names robustness perturbations
    (as `--perturb` does): each document gets one more item per perturbation."""

    def decorate(fn: Callable) -> Callable:
        params = list(inspect.signature(fn).parameters)
        if not params:
            raise TypeError(f"@benchmark test {fn.__name__} must take the document as its first argument")
        rate = _asserts(fn) if pass_rate is None else pass_rate
        declared(tuple(tasks))
        fn = pytest.mark.usefixtures("lmeval_answers")(fn)
        if perturb:
            fn = getattr(pytest.mark, PERTURB_MARK)(*perturb)(fn)
        return pytest.mark.lmeval_benchmark(*tasks, argname=params[0], pass_rate=rate)(fn)

    return decorate


def _asserts(fn: Callable) -> bool:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return False
    return any(isinstance(node, ast.Assert) for node in ast.walk(tree))


class Doc(Mapping[str, Any]):
    """One document of a task, answered by the model. Indexing reads the document's fields
    (`doc["question"]`); `answer` is the model's answer, `score()` its metrics."""

    def __init__(
        self,
        task: Task,
        work: DocRequests,
        answers: Mapping[Any, Response],
        log_sample: bool,
        predict_only: bool = False,
    ) -> None:
        self.task = task
        self.predict_only = predict_only  # answered, filtered and logged; no metric computed
        self.work = work
        self._answers = answers
        self._log_sample = log_sample
        self._scored: ScoredDoc | None = None
        self.scoring_error: BaseException | None = None

    # -- the document -------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return f"{self.work.task}-{self.work.doc_id}"

    @property
    def fields(self) -> dict[str, Any]:
        return self.task.docs[self.work.doc_id]

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __repr__(self) -> str:
        return f"<Doc {self.id}>"

    @property
    def prompt(self) -> str:
        return self.work.prompt

    @property
    def target(self) -> Any:
        return self.work.target

    # -- the model's answers ------------------------------------------------------------------
    @property
    def responses(self) -> list[Response]:
        """The raw answers, one per request (generated texts, or (loglikelihood, is_greedy))."""
        return [self._answers[r] for r in self.work.requests]

    @property
    def answer(self) -> Any:
        """Generation: the generated text (the first repeat). Multiple choice: the choice the
        model finds most likely. Otherwise the first raw answer."""
        return self.task.output.answer(self.task, self.work, self.responses)

    # -- scores -------------------------------------------------------------------------------
    def score(self) -> dict[str, Any]:
        """The task's metrics for this document (computed once), as the item reports them."""
        if self.scoring_error is not None:
            raise self.scoring_error
        if self._scored is None:
            try:
                self._scored = score(self.task, self.work, self._answers, self._log_sample, self.predict_only)
            except (Exception, pytest.fail.Exception) as exc:
                self.scoring_error = exc  # the body may catch it; the item still is not scored
                raise
        return self._scored.metrics

    @property
    def metrics(self) -> dict[str, Any]:
        return self.score()

    @property
    def correct(self) -> bool | None:
        """Whether the model got it right, by the first 0/1 metric (acc, exact_match,
        acc_norm); None if the task has none."""
        self.score()
        assert self._scored is not None
        return self._scored.correct

    def record(self, passed: bool | None) -> dict[str, Any]:
        """The plain-JSON record that travels on the item's report (with `pass_rate` when the
        benchmark counts passes)."""
        self.score()
        assert self._scored is not None
        record = dict(self._scored.record)
        if self.predict_only:
            record["predict_only"] = True
        elif passed is not None:
            record["metrics"] = {**record["metrics"], PASS_RATE: 1.0 if passed else 0.0}
        return record
