"""LLM-as-a-judge: open-ended answers scored by a second model.

A benchmark names a judged metric (`lm.judge(...)` in its `metrics=`); the run names the judge
(`--judge-model BACKEND:NAME`, usually an OpenAI-compatible server, also `hf:`). Once the
model has answered (plugin.py `lmeval_answers`), the judge phase renders one judging prompt per
document and filter (the question, the model's answer, the reference), sends them through the
same engine as the model's requests (batched, cached under the judge's own fingerprint,
resumable, a progress bar of its own), and reads each reply as the metric's declaration
says (tasks/judged_metrics.py, where the prompt templates and the reply parsing live):

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

from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..core import errors as core_errors
from ..core.errors import LmevalError
from ..engine.answer_checks import Unanswered
from ..models.spec import ModelSpec, redact_args
from ..tasks.judged_metrics import Judge, stop_using, use_verdicts
from ..tasks.lmeval.yaml_loader import FunctionRef

_API_BACKENDS = ("local-completions", "openai-completions", "local-chat-completions", "openai-chat-completions")


class NotScored(core_errors.NotScored, Exception):
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

    def score(self, judge: Judge, doc: Mapping[str, Any], answer: Any) -> float:
        """The judge's score for an answer the strategy sends to it (judged metrics read it
        while this book is in use); an answer without one is unscored, with the reason."""
        if self.options is None or self.options.spec is None:
            raise NotScored(
                f"metric {judge.name!r} is scored by a judge model: pass --judge-model BACKEND:NAME "
                "(or --judge-strategy rule to score by its rule alone)"
            )
        verdict = self.verdicts.get(judge.key(doc, answer))
        if verdict is None:
            raise NotScored(f"judge {judge.name!r}: this answer was not judged in this run's judge phase")
        if verdict.score is None:
            raise NotScored(f"judge {judge.name!r}: {verdict.reason}")
        return verdict.score


def _judge_of(fn: Any) -> Judge | None:
    """The Judge behind a metric_list entry's `fn`: itself, a Metric holding it, or (YAML) a
    `!function` helper naming either, imported now."""
    if isinstance(fn, FunctionRef):
        fn = fn.load()
    fn = getattr(fn, "fn", fn)  # a Metric
    return fn if isinstance(fn, Judge) else None


def judged_metrics(task: Any) -> list[Judge]:
    found = (_judge_of(e.get("fn")) for e in task.config.metric_list if isinstance(e, dict))
    return [j for j in found if j is not None]


def check_judge_given(tasks: Mapping[str, Any], works: Iterable[Any], options: JudgeOptions | None) -> None:
    """The selected tasks' judged metrics that will ask the judge (their strategy, or the run's,
    is not `rule`) with no --judge-model: one LmevalError naming them, before the model loads."""
    if options is not None and options.spec is not None:
        return
    run_strategy = options.strategy if options is not None else None
    needing: dict[str, list[str]] = {}
    for name in dict.fromkeys(w.task for w in works):
        judges = judged_metrics(tasks[name])
        asked = [j.name for j in judges if (j.strategy if run_strategy in (None, "auto") else run_strategy) != "rule"]
        if asked:
            needing[name] = asked
    if needing:
        metrics = list(dict.fromkeys(m for names in needing.values() for m in names))
        raise LmevalError(
            f"task{'s' if len(needing) > 1 else ''} {', '.join(map(repr, needing))}: "
            f"{'metrics' if len(metrics) > 1 else 'metric'} {', '.join(map(repr, metrics))} "
            f"{'are' if len(metrics) > 1 else 'is'} scored by a judge model: pass --judge-model BACKEND:NAME "
            "(or --judge-strategy rule to score by the metric's rule alone)"
        )


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
    return use_verdicts(book)


def end_judge_phase(token: Any) -> None:
    stop_using(token)


def cache_path(cache_dir: Path | None) -> Path | None:
    return cache_dir / "responses.sqlite" if cache_dir is not None else None


def run_judge_phase(config: pytest.Config, state: Any, works: list[Any], answers: Mapping[Any, Any]) -> Any:
    """The judge phase of a run, after the model's answers (plugin.py `lmeval_answers`): the
    judge's requests go through the engine with its own cache, progress bar and failure policy
    (a judge that gives up leaves its documents unscored; the run goes on). Returns the token
    that `end_judge_phase` takes, or None when no selected task has a judged metric."""
    from ..engine.answering import FailurePolicy, failure_policy, run_requests
    from ..engine.cache import open_response_cache
    from ..engine.progress import progress_bar
    from ..models.registry import load_backend

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
