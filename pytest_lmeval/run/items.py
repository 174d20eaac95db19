"""A document's item: the model answers every selected document's requests in one engine pass
(the `lmeval_answers` session fixture), then each item scores its document in its call phase and
its record travels on its report to the controller (also under xdist).

A plugin module (registered by plugin.py): its fixtures and hooks read the session's Run."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator
from typing import Any

import pytest

from ..core.errors import LmevalError
from ..core.requests import Request
from ..engine.answer_checks import check_answers
from ..engine.answering import FailurePolicy, failure_policy, run_requests
from ..engine.progress import progress_bar
from ..models.backend import Backend, close_backend
from ..models.registry import load_backend
from ..scoring.document import short_name
from ..tasks.benchmark import MARK as BENCHMARK_MARK
from ..tasks.benchmark import Doc
from . import load_gc
from .doc_ref import DocRef
from .run import Run

SCORED = pytest.StashKey[dict[str, Any]]()


def _shown(config: pytest.Config) -> Callable[[], Any]:
    """A context that lets progress reach the terminal although pytest captures output."""
    capman = config.pluginmanager.getplugin("capturemanager")
    return capman.global_and_fixture_disabled


@pytest.fixture(scope="session")
def lm(pytestconfig: pytest.Config) -> Generator[Backend, None, None]:
    """The model under evaluation (from --model), loaded once per session."""
    run = Run.of(pytestconfig)
    spec = run.options.model
    if spec is None:
        raise LmevalError("no model given: pass --model BACKEND:NAME")
    with _shown(pytestconfig)():
        print(f"\nlmeval: loading {spec.label} ...", flush=True)
    with load_gc.loading(pytestconfig):
        backend = load_backend(spec, device=run.options.device, batch_size=run.options.batch_size)
    run.model_info = backend.info()
    try:
        yield backend
    finally:  # vLLM's engine processes stop with the session, Ctrl-C or not
        close_backend(backend)


def _asking(run: Run, req: Request) -> str:
    docs = [f"{w.task}-{w.doc_id}" for w in run.work.values() if req in w.requests]
    where = ", ".join(docs[:5]) + (f" and {len(docs) - 5} more" if len(docs) > 5 else "")
    return f"document {where or '?'}"


@contextlib.contextmanager
def _stop_on_failure(run: Run) -> Generator[None, None, None]:
    """When the backend gives up on a request for good, the engine keeps every answer it has
    and stops there (the documents it did not reach are skipped as not run; the run reports
    what it scored, marked partial, with one line naming the server's error and the document
    that asked), or with --ignore-errors goes on, and only the documents that asked fail."""
    policy = FailurePolicy(ignore_errors=run.options.ignore_errors, describe=lambda req: _asking(run, req))
    with failure_policy(policy):
        yield
    if policy.interrupted is not None and run.stopped is None:
        run.interrupted_by = policy.interrupted
        run.stopped = (
            f"lmeval: interrupted ({policy.interrupted}) while the model was answering: "
            "the documents answered before it are scored, the rest are listed as not run"
        )
    elif policy.stopped is not None and run.stopped is None:
        req, reason = policy.stopped
        run.stopped = f"lmeval: stopped at a {req.kind} request of {_asking(run, req)}: {reason}"
        run.stop_repeats = policy.repeats


@pytest.fixture(scope="session")
def lmeval_answers(request: pytest.FixtureRequest) -> dict:
    """Every selected document's requests, answered in one pass of the engine (the model is
    loaded only if the cache does not already hold every answer)."""
    run = Run.of(request.config)
    mine = run.xdist.my_items(request.session.items)
    work = [run.work[i.nodeid] for i in mine if i.nodeid in run.work]
    with _shown(request.config)(), _stop_on_failure(run):
        answers, stats = run_requests(
            lambda: request.getfixturevalue("lm"),
            (r for w in work for r in w.requests),
            progress_bar(request.config),
            cache=run.open_cache(),
            refresh=run.options.refresh_cache,
        )
    run.answers = answers
    run.engine_stats = stats.to_json()
    request.config.hook.pytest_lmeval_answered(run=run, works=work, answers=answers, stats=stats)
    run.answered = time.perf_counter()
    return answers


def _answered_doc(item: pytest.Function, ref: DocRef) -> Doc:
    """The item's document with its answers (computed now if this worker's pass lacked them,
    e.g. an item re-sent after a worker crashed)."""
    run = Run.of(item.config)
    answers = item._request.getfixturevalue("lmeval_answers")
    work = run.work[item.nodeid]
    missing = [r for r in work.requests if r not in answers]
    if missing:
        backend = lambda: item._request.getfixturevalue("lm")  # noqa: E731
        with _stop_on_failure(run):
            extra, _ = run_requests(backend, missing, progress_bar(item.config), cache=run.open_cache())
        answers.update(extra)
    check_answers(work.requests, answers)  # a document the backend gave up on, or with NaN answers
    return Doc(run.tasks[ref.task], work, answers, run.wants_samples, run.options.predict_only)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator:
    """A benchmark's body runs on its document; scoring happens here, in the call phase, so a
    broken scorer fails the item with its traceback. A failed assertion fails the item and
    counts against `pass_rate`; the document's metrics still count."""
    mark = pyfuncitem.get_closest_marker(BENCHMARK_MARK)
    argname = mark.kwargs["argname"] if mark else None
    ref = pyfuncitem.funcargs.get(argname) if argname else None
    if not isinstance(ref, DocRef):
        return (yield)
    run = Run.of(pyfuncitem.config)
    doc = _answered_doc(pyfuncitem, ref)
    pyfuncitem.funcargs[argname] = doc
    if doc.predict_only:  # the body (scoring, assertions on scores) is skipped: see pytest_pyfunc_call_predict_only
        result = yield
        _keep(pyfuncitem, ref, lambda: _record(pyfuncitem.config, doc, ref, None))
        return result
    counts = bool(mark.kwargs.get("pass_rate"))
    try:
        result = yield
    except (AssertionError, pytest.fail.Exception):
        if doc.scoring_error is not None:  # scoring itself failed: not scored, not a failed check
            pyfuncitem.stash[SCORED] = _not_scored(ref, doc.scoring_error)
            raise
        _keep(pyfuncitem, ref, lambda: _record(pyfuncitem.config, doc, ref, False if counts else None))
        raise
    except BaseException as exc:
        pyfuncitem.stash[SCORED] = _not_scored(ref, exc)
        raise
    _keep(pyfuncitem, ref, lambda: _record(pyfuncitem.config, doc, ref, True if counts else None))
    if run.options.item_outcome == "correct" and doc.correct is False:
        pytest.fail(wrong_answer(doc), pytrace=False)  # what was asked and answered, not our code
    return result


@pytest.hookimpl(specname="pytest_pyfunc_call", tryfirst=True)
def pytest_pyfunc_call_predict_only(pyfuncitem: pytest.Function) -> bool | None:
    """--predict-only: a document's item passes once it is answered; its benchmark body, which
    scores it and may assert on the scores, does not run (True: the call is done)."""
    doc = next((v for v in pyfuncitem.funcargs.values() if isinstance(v, Doc)), None)
    return True if doc is not None and doc.predict_only else None


def _short(text: str, limit: int = 300) -> str:
    flat = " ⏎ ".join(line.strip() for line in str(text).strip().splitlines() if line.strip())
    return flat if len(flat) <= limit else "..." + flat[-(limit - 3) :]


def wrong_answer(doc: Doc) -> str:
    """`--item-outcome correct`'s failure: the document, its scores, the end of its prompt,
    the answer the model chose and the right one."""
    shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in doc.metrics.items())
    work = doc.work
    right: Any = work.target
    if work.choices and isinstance(right, int) and 0 <= right < len(work.choices):
        right = work.choices[right]
    return (
        f"{doc.id} answered wrong ({shown})\n"
        f"  prompt: {_short(doc.prompt)}\n"
        f"  answer: {_short(repr(doc.answer), 200)}\n"
        f"  right:  {_short(repr(right), 200)}"
    )


def _record(config: pytest.Config, doc: Doc, ref: DocRef, passed: bool | None) -> dict[str, Any]:
    """The document's record, with what each feature adds (its confidence, what its requests
    cost) and its perturbation."""
    record = doc.record(passed=passed)
    config.hook.pytest_lmeval_document_record(doc=doc, record=record)
    if ref.perturbation:
        record["perturbation"] = ref.perturbation
    return record


def _not_scored(ref: DocRef, exc: BaseException) -> dict[str, Any]:
    return {"task": ref.task, "doc_id": ref.doc_id, "error": f"{type(exc).__name__}: {exc}"}


def _keep(item: pytest.Item, ref: DocRef, record: Callable[[], dict[str, Any]]) -> None:
    """Store the document's record for its report; a scorer that fails is the item's error."""
    try:
        out = record()
    except Exception as exc:
        item.stash[SCORED] = _not_scored(ref, exc)
        raise
    item.stash[SCORED] = out
    for key, value in out.get("metrics", {}).items():
        item.user_properties.append((short_name(key), value))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Generator:
    report = yield
    record = item.stash.get(SCORED, None)
    if record is not None and (call.when == "call" or (call.when == "setup" and report.failed)):
        # Plain JSON data: xdist serializes extra report attributes and restores them.
        report.lmeval = record
        item.stash[SCORED] = None
    return report


class Records:
    """Receives every document's record on the controlling process (also under xdist, where
    the workers' reports arrive here)."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, "lmeval", None)
        if record is not None and not self.run.is_worker:
            self.run.keep(record)
