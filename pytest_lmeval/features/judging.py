"""LLM-as-a-judge: open-ended answers scored by a second model.

A benchmark names a judged metric (`lm.judge(...)` in its `metrics=`); the run names the judge
(`--judge-model BACKEND:NAME`, usually an OpenAI-compatible server, also `hf:`). Once the
model has answered (plugin.py `lmeval_answers`), the judge phase renders one judging prompt per
document and filter (the question, the model's answer, the reference), sends them through the
same engine as the model's requests (batched, cached under the judge's own fingerprint,
resumable, a progress bar of its own), and parses each reply:

- a verdict (default: the first of the words CORRECT / INCORRECT in the reply, whole words,
  any case), mapped to its score; or, with `scale=N`, a rating `[[x]]` with 0 <= x <= N,
  scored x / N;
- a reply that holds none is malformed: the judge is asked again (`retries` times) with the
  prompt and a line saying what to reply; a reply still malformed, or a judge that gave up,
  leaves the document unscored, with the reason and the judge's last reply.

Strategies (EvalScope's names; `--judge-strategy`, else each metric's own, which is what
`auto` means): `rule` never asks the judge (the metric's rule scores: by default the answer
equals the reference, ignoring case, spaces and punctuation at its ends), `llm` always does,
`llm_recall` asks only where the rule says wrong.

Every judging prompt and raw reply goes into the document's samples (`judged`). The judge's API
key is read from the environment by its backend and never written anywhere.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Generator, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..core.errors import LmevalError
from ..models.base import ModelSpec, redact_args
from ..run import answer_checks
from ..run.answer_checks import Unanswered

# EvalScope's judge strategies: `rule` never asks the judge, `llm` always does, `llm_recall`
# asks it only where the rule says wrong, `auto` lets each benchmark's metric decide.
STRATEGIES = ("auto", "rule", "llm", "llm_recall")
_API_BACKENDS = ("local-completions", "openai-completions", "local-chat-completions", "openai-chat-completions")

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


class NotScored(answer_checks.NotScored, Exception):
    """A judged answer without a score (no verdict, no judge): its item fails with the reason
    alone and the document is listed unscored with it. Also an Exception, so the plugin's
    scoring records it as the document's error wherever it surfaces."""

    __module__ = "builtins"


@dataclass(frozen=True)
class JudgeOptions:
    """The run's judge: --judge-model, --judge-model-args, --judge-concurrency, --judge-strategy."""

    spec: ModelSpec | None
    args_text: str | None
    concurrency: int = 4
    strategy: str | None = None  # None: auto

    def backend_spec(self) -> ModelSpec:
        """The judge's spec, with --judge-concurrency as an API backend's num_concurrent."""
        assert self.spec is not None
        args = dict(self.spec.args)
        if self.spec.backend in _API_BACKENDS:
            args.setdefault("num_concurrent", self.concurrency)
        return ModelSpec(self.spec.backend, self.spec.name, args)

    def to_record(self) -> dict[str, Any]:
        """What results.json says about the judge (secret args redacted)."""
        spec = self.spec
        return {
            "model": spec.label if spec else None,
            "model_args": redact_args(spec.args) if spec else {},
            "concurrency": self.concurrency,
            "strategy": self.strategy or "auto",
        }


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
        """The book's key for this answer: the judging prompt, and how this judge reads replies
        (two judged metrics may send the same prompt and read the reply differently)."""
        return (self.prompt(doc, answer), self.verdicts, self.scale, self.retries, self.max_tokens)

    @property
    def expected(self) -> str:
        if self.scale is not None:
            return f"a rating between 0 and {self.scale:g} in double brackets, like [[{self.scale:g}]]"
        return " or ".join(word for word, _ in self.verdicts)

    def parse(self, reply: str) -> float | None:
        """The score a reply gives, or None when it is malformed: the first verdict word in
        it (whole words, any case; the longer word where two start at the same place), or the
        first [[rating]] within 0..scale."""
        if self.scale is not None:
            match = RATING.search(reply)
            if match is None:
                return None
            value = float(match.group(1))
            return value / self.scale if 0 <= value <= self.scale else None
        words = sorted(self.verdicts, key=lambda v: -len(v[0]))
        alternatives = "|".join(re.escape(w) for w, _ in words)
        match = re.search(rf"(?<!\w)({alternatives})(?!\w)", reply, re.IGNORECASE)
        if match is None:
            return None
        said = match.group(1).lower()
        return next(score for word, score in self.verdicts if word.lower() == said)

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
        book = _BOOK.get()
        strategy = book.strategy if book is not None else None
        if not self.asks(strategy, doc, answer):
            return self.rule_score(doc, answer)
        if book is None or book.options is None or book.options.spec is None:
            raise NotScored(
                f"metric {self.name!r} is scored by a judge model: pass --judge-model BACKEND:NAME "
                "(or --judge-strategy rule to score by its rule alone)"
            )
        verdict = book.verdicts.get(self.key(doc, answer))
        if verdict is None:
            raise NotScored(f"judge {self.name!r}: this answer was not judged in this run's judge phase")
        if verdict.score is None:
            raise NotScored(f"judge {self.name!r}: {verdict.reason}")
        return verdict.score


@dataclass
class Verdict:
    """The judge's word on one answer: every (prompt, reply) exchanged, and the score parsed
    from the last reply (None: unscored, with the reason)."""

    exchanges: list[tuple[str, str]] = field(default_factory=list)
    score: float | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "prompts": [p for p, _ in self.exchanges],
            "replies": [r for _, r in self.exchanges],
            "score": self.score,
            "reason": self.reason,
        }


@dataclass
class JudgeBook:
    """The judge phase's verdicts, keyed by `Judge.key` (the metric renders it again from the
    document and the answer when it scores)."""

    options: JudgeOptions | None
    strategy: str | None
    verdicts: dict[tuple[Any, ...], Verdict] = field(default_factory=dict)
    by_doc: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)  # for samples
    stats: dict[str, int] = field(default_factory=dict)


_BOOK: ContextVar[JudgeBook | None] = ContextVar("lmeval_judge_book", default=None)


def _judge_of(fn: Any) -> Judge | None:
    """The Judge behind a metric_list entry's `fn`: itself, a Metric holding it, or (YAML) a
    `!function` helper naming either, imported now."""
    from ..tasks.lmeval.yaml_loader import FunctionRef, _import_helper

    if isinstance(fn, FunctionRef):
        if fn._fn is None:
            fn._fn = _import_helper(fn.yaml_path, fn.dotted)
        fn = fn._fn
    fn = getattr(fn, "fn", fn)  # a Metric
    return fn if isinstance(fn, Judge) else None


def judged_metrics(task: Any) -> list[Judge]:
    found = (_judge_of(e.get("fn")) for e in task.config.metric_list if isinstance(e, dict))
    return [j for j in found if j is not None]


def _answers_to_judge(task: Any, work: Any, answers: Mapping[Any, Any]) -> Iterable[tuple[str, Any]]:
    """(filter name, the answer a metric function receives) for each of the task's filters,
    as scoring.py computes them; nothing for a document whose answers are missing."""
    responses = [answers.get(r) for r in work.requests]
    if any(r is None or isinstance(r, Unanswered) for r in responses):
        return
    doc = task.docs[work.doc_id]
    instances = task.output.instances(responses)
    for pipeline in task.config.filters:
        filtered = pipeline.apply([list(i) for i in instances], [doc] * len(instances))
        _, answer = task.output.compute(task, work, filtered, [])
        yield pipeline.name, answer


def _gen_kwargs(judge: Judge) -> dict[str, Any]:
    return {"until": [], "max_gen_toks": judge.max_tokens, "do_sample": False, "temperature": 0.0}


RunRequests = Callable[[list[Any]], dict[Any, Any]]  # judge requests -> replies (the engine)


def judge_phase(
    tasks: Mapping[str, Any],
    works: Iterable[Any],
    answers: Mapping[Any, Any],
    options: JudgeOptions | None,
    run: RunRequests,
) -> JudgeBook:
    """Ask the judge about every answer a judged metric scores (its strategy permitting),
    asking again where a reply is malformed; `run` sends requests through the engine."""
    from ..core.requests import Request

    book = JudgeBook(options, options.strategy if options else None)
    pending: dict[tuple[Any, ...], tuple[Judge, Mapping[str, Any], Any]] = {}
    for work in works:
        task = tasks[work.task]
        judges = judged_metrics(task)
        if not judges:
            continue
        doc = task.docs[work.doc_id]
        for filter_name, answer in _answers_to_judge(task, work, answers):
            for judge in judges:
                if not judge.asks(book.strategy, doc, answer):
                    continue
                key = judge.key(doc, answer)
                entry = {"filter": filter_name, "metric": judge.name, "key": key}
                book.by_doc.setdefault((work.task, work.doc_id), []).append(entry)
                if key not in book.verdicts:
                    book.verdicts[key] = Verdict()
                    pending[key] = (judge, doc, answer)
    if not pending or options is None or options.spec is None:
        return book
    attempt = 0
    while pending:
        asked = {}
        for key, (judge, doc, answer) in pending.items():
            asked[key] = Request.generate_until(judge.prompt(doc, answer, attempt), _gen_kwargs(judge))
        replies = run(list(asked.values()))
        still: dict[tuple[Any, ...], tuple[Judge, Mapping[str, Any], Any]] = {}
        for key, req in asked.items():
            judge = pending[key][0]
            verdict = book.verdicts[key]
            reply = replies.get(req)
            if isinstance(reply, Unanswered) or reply is None:
                verdict.reason = f"the judge gave no answer: {reply.reason if reply else 'not run'}"
                continue
            verdict.exchanges.append((req.args[0], str(reply)))
            verdict.score = judge.parse(str(reply))
            if verdict.score is not None:
                verdict.reason = None
            elif attempt < judge.retries:
                still[key] = pending[key]
            else:
                tries = attempt + 1
                verdict.reason = (
                    f"no verdict in the judge's reply after {tries} {'try' if tries == 1 else 'tries'} "
                    f"(expected {judge.expected}); its last reply: {str(reply)[:200]!r}"
                )
        pending, attempt = still, attempt + 1
    book.stats["judged"] = sum(1 for v in book.verdicts.values() if v.score is not None)
    book.stats["malformed"] = sum(1 for v in book.verdicts.values() if v.score is None)
    book.stats["retried"] = sum(1 for v in book.verdicts.values() if len(v.exchanges) > 1)
    return book


class JudgeReports:
    """Registered for the run once the judge phase has run: puts each document's judging
    prompts and replies in its samples, and a line about the phase in the terminal summary."""

    def __init__(self, book: JudgeBook, engine: dict[str, Any]) -> None:
        self.book = book
        self.engine = engine

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> Generator:
        report = yield
        record = getattr(report, "lmeval", None)
        if not record or "samples" not in record:
            return report
        entries = self.book.by_doc.get((record["task"], record["doc_id"]), [])
        for sample in record["samples"]:
            mine = [e for e in entries if e["filter"] == sample.get("filter")]
            if mine:
                sample["judged"] = {e["metric"]: self.book.verdicts[e["key"]].to_json() for e in mine}
        return report

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_line(summary_line({**self.engine, **self.book.stats}))


def summary_line(figures: dict[str, Any]) -> str:
    """The terminal's line about the judge phase, from its engine figures and verdict counts."""
    f = figures
    return (
        f"lmeval judge: {f.get('requests', 0)} requests ({f.get('unique_requests', 0)} unique): "
        f"{f.get('from_cache', 0)} from cache, {f.get('computed', 0)} computed; "
        f"{f.get('judged', 0)} answers judged, {f.get('retried', 0)} asked again, "
        f"{f.get('malformed', 0)} without a verdict (unscored)"
    )


def workers_summary_line(engine_stats: dict[str, Any]) -> str | None:
    """Under xdist the judge phase ran on the workers: their figures, added up, for the
    controller's summary (None when no worker judged anything)."""
    judged = [w["judge"] for w in engine_stats.get("workers", []) if isinstance(w.get("judge"), dict)]
    if not judged:
        return None
    totals: dict[str, Any] = {}
    for figures in judged:
        for key, value in figures.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
    return summary_line(totals)


def activate(book: JudgeBook) -> Any:
    """Make the book the one judged metrics read (returns the token to reset it with)."""
    return _BOOK.set(book)


def end_judge_phase(token: Any) -> None:
    _BOOK.reset(token)


def cache_path(cache_dir: Path | None) -> Path | None:
    return cache_dir / "responses.sqlite" if cache_dir is not None else None


def run_judge_phase(config: pytest.Config, state: Any, works: list[Any], answers: Mapping[Any, Any]) -> Any:
    """The judge phase of a run, after the model's answers (plugin.py `lmeval_answers`): the
    judge's requests go through the engine with its own cache, progress bar and failure policy
    (a judge that gives up leaves its documents unscored; the run goes on). Returns the token
    that `end_judge_phase` takes, or None when no selected task has a judged metric."""
    from ..engine.answering import FailurePolicy, failure_policy, run_requests
    from ..engine.cache import open_response_cache
    from ..models.base import load_backend
    from ..run.progress import progress_bar

    if not any(judged_metrics(state.tasks[w.task]) for w in works):
        return None
    opts = state.options
    options: JudgeOptions | None = opts.judge
    shown = config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled
    totals: dict[str, Any] = {}
    loaded: list[Any] = []
    cache = None

    def backend() -> Any:
        if not loaded:
            assert options is not None
            spec = options.backend_spec()
            print(f"\nlmeval: loading judge {spec.label} ...", flush=True)
            batch = options.concurrency if spec.backend == "hf" else "auto"
            loaded.append(load_backend(spec, device=opts.device, batch_size=batch))
        return loaded[0]

    if options is not None and options.spec is not None and opts.cache_dir is not None:
        explicit = config.getoption("lmeval_cache_dir") is not None or bool(config.getini("lmeval_cache_dir"))
        opened = open_response_cache(opts.cache_dir / "responses.sqlite", options.backend_spec(),
                                     explicit=explicit, batch_size="auto")  # fmt: skip
        cache = opened if opened.enabled else None
        if cache is None and opened.note:
            with shown():
                print(opened.note.replace("lmeval: cache:", "lmeval: judge cache:"), flush=True)
    bar = progress_bar(config)

    def run(requests: list[Any]) -> dict[Any, Any]:
        policy = FailurePolicy(ignore_errors=True, describe=lambda req: "a judging prompt")
        with shown(), failure_policy(policy):
            got, stats = run_requests(backend, requests, lambda kind, n: bar("judge", n), cache=cache,
                                      refresh=opts.refresh_cache)  # fmt: skip
        for key, value in stats.to_json().items():
            if isinstance(value, (int, float)):
                totals[key] = totals.get(key, 0) + value
        return got

    book = judge_phase(state.tasks, works, answers, options, run)
    state.engine_stats["judge"] = {**(options.to_record() if options else {}), **totals, **book.stats}
    config.pluginmanager.register(JudgeReports(book, totals), "lmeval-judge")
    return activate(book)
