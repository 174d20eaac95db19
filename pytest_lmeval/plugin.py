"""pytest hooks and fixtures: options, collection, the model run, and the summary. Thin on
purpose: the work lives in the modules these hooks call."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from .core.errors import LmevalError
from .core.requests import Request
from .engine.answering import FailurePolicy, failure_policy, run_requests
from .features import efficiency
from .features import perturbation as perturb
from .features import xdist as distribute
from .features.calibration import CONFIDENCE, doc_confidence
from .features.gate_tests import log_gates
from .features.judging import end_judge_phase, run_judge_phase
from .models.base import Backend, check_model, load_backend, redact_args_text
from .report import finish as summary
from .run import load_gc as heap
from .run.answer_checks import check_answers
from .run.options import addoptions
from .run.progress import progress_bar
from .run.state import DocRef, LmevalState, lmeval_ref
from .run.uncollected import OrphanItems
from .run.unscored import ERROR, doc_of_nodeid, refused, unscored_of
from .scoring.document import short_name
from .tasks.benchmark import MARK as BENCHMARK_MARK
from .tasks.benchmark import Doc

STATE = pytest.StashKey[LmevalState]()
SCORED = pytest.StashKey[dict[str, Any]]()


def state_of(config: pytest.Config) -> LmevalState:
    return config.stash[STATE]


def pytest_addoption(parser: pytest.Parser) -> None:
    addoptions(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    selection = config.getoption("lmeval_tasks") or ""
    if selection != "list" and not selection.startswith("list="):
        return None
    state = LmevalState.from_config(config)
    print(state.registry.describe(selection.partition("=")[2].strip() or None))
    return 0


def pytest_configure(config: pytest.Config) -> None:
    gpus = getattr(config, "workerinput", {}).get(distribute.GPUS_KEY)
    if gpus:  # an xdist worker pinned to its GPUs, before anything initialises CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    config.addinivalue_line("markers", "lmeval: a benchmark document evaluated by pytest-lmeval")
    config.addinivalue_line("markers", "lmeval_benchmark(*tasks): set by @pytest_lmeval.benchmark")
    config.addinivalue_line("markers", "lmeval_perturb(*names): perturbations of each document (perturb.py)")
    state = LmevalState.from_config(config)
    state.perturb = perturb.selected(config)
    config.stash[STATE] = state
    config.pluginmanager.register(_Collector(state), "lmeval-collector")
    config.pluginmanager.register(OrphanItems(state), "lmeval-orphans")
    # Cleanups run last-in first-out: registered before pytest's unraisable-exception plugin
    # registers its own (this hook runs before that plugin's), the heap a model load froze is
    # thawed after pytest's last collection, which it keeps short.
    config.add_cleanup(lambda: heap.thaw(config))


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    opts = state_of(config).options
    if opts.model is None:
        return None
    args = redact_args_text(opts.model_args_text)
    return [f"lmeval: model {opts.model.label}" + (f" ({args})" if args else "")]


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    state_of(session.config).prepare(list(session.config.args))


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    state = state_of(config)
    if state.tasks_only:  # `pytest --tasks mmlu` with no paths: the tasks' benchmark files alone
        return True
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    owns = state.owns_test_file(collection_path)
    return None if owns is None or owns else True


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    mark = metafunc.definition.get_closest_marker(BENCHMARK_MARK)
    if mark is None:
        return
    state = state_of(metafunc.config)
    owner = getattr(metafunc.definition.parent, "lmeval_task", None)  # orphans.TaskModule
    names = [owner] if owner else state.benchmark_tasks(mark.args, Path(metafunc.module.__file__))
    state.parametrized.update(names)
    marked = [n for m in metafunc.definition.iter_markers(perturb.MARK) for n in m.args]
    perturbations = state.perturb + tuple(
        n for n in perturb.parse_names(marked, perturb.MARK) if n not in state.perturb
    )
    refs = []
    for name in names:
        task = state.tasks[name]
        shown = perturbations if perturbations and perturb.supports(task) else ()
        for i in range(len(task.docs)):
            refs += [DocRef(name, i), *(DocRef(name, i, p) for p in shown)]
    metafunc.parametrize(mark.kwargs["argname"], refs, ids=[str(r) for r in refs])


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if lmeval_ref(item) is not None:
            item.add_marker("lmeval")


def pytest_collection_finish(session: pytest.Session) -> None:
    state = state_of(session.config)
    state.build_requests(session.items)
    if state.work and state.options.model is not None:  # a model that cannot load: one line, before any loads
        check_model(state.options.model, state.options.batch_size)


def pytest_configure_node(node: Any) -> None:  # xdist controller, per worker
    node.workerinput[distribute.WORKERINPUT_KEY] = True
    workers = int(node.config.getoption("numprocesses") or 1)
    index = distribute.worker_index(node.workerinput)
    share = distribute.gpu_share(distribute.visible_gpus(), workers, index)
    if share:
        node.workerinput[distribute.GPUS_KEY] = ",".join(share)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if state_of(config).options.model is None or config.getoption("dist") != "load":
        return None
    return distribute.ShardScheduling(config, log)


# -- fixtures -------------------------------------------------------------------------------------
def _shown(config: pytest.Config) -> Callable[[], Any]:
    """A context that lets progress reach the terminal although pytest captures output."""
    capman = config.pluginmanager.getplugin("capturemanager")
    return capman.global_and_fixture_disabled


@pytest.fixture(scope="session")
def lm(pytestconfig: pytest.Config) -> Backend:
    """The model under evaluation (from --model), loaded once per session."""
    state = state_of(pytestconfig)
    spec = state.options.model
    if spec is None:
        raise LmevalError("no model given: pass --model BACKEND:NAME")
    with _shown(pytestconfig)():
        print(f"\nlmeval: loading {spec.label} ...", flush=True)
    with heap.loading(pytestconfig):
        backend = load_backend(spec, device=state.options.device, batch_size=state.options.batch_size)
    state.model_info = backend.info()
    return backend


def _my_items(session: pytest.Session) -> list[pytest.Item]:
    workerinput = getattr(session.config, "workerinput", None)
    if not workerinput or not workerinput.get(distribute.WORKERINPUT_KEY):
        return session.items
    span = distribute.shard(len(session.items), int(workerinput["workercount"]), distribute.worker_index(workerinput))
    return session.items[span.start : span.stop]


def _asking(state: LmevalState, req: Request) -> str:
    docs = [f"{w.task}-{w.doc_id}" for w in state.work.values() if req in w.requests]
    where = ", ".join(docs[:5]) + (f" and {len(docs) - 5} more" if len(docs) > 5 else "")
    return f"document {where or '?'}"


@contextlib.contextmanager
def _stop_on_failure(state: LmevalState) -> Generator[None, None, None]:
    """When the backend gives up on a request for good, the engine keeps every answer it has
    and stops there (the documents it did not reach are skipped as not run; the run reports
    what it scored, marked partial, with one line naming the server's error and the document
    that asked), or with --ignore-errors goes on, and only the documents that asked fail."""
    policy = FailurePolicy(ignore_errors=state.options.ignore_errors, describe=lambda req: _asking(state, req))
    with failure_policy(policy):
        yield
    if policy.stopped is not None and state.stopped is None:
        req, reason = policy.stopped
        state.stopped = f"lmeval: stopped at a {req.kind} request of {_asking(state, req)}: {reason}"


@pytest.fixture(scope="session")
def lmeval_answers(request: pytest.FixtureRequest) -> Generator[dict, None, None]:
    """Every selected document's requests, answered in one pass of the engine (the model is
    loaded only if the cache does not already hold every answer)."""
    state = state_of(request.config)
    work = [state.work[i.nodeid] for i in _my_items(request.session) if i.nodeid in state.work]
    cache = state.open_cache()
    with _shown(request.config)(), _stop_on_failure(state):
        answers, stats = run_requests(
            lambda: request.getfixturevalue("lm"),
            (r for w in work for r in w.requests),
            progress_bar(request.config),
            cache=cache,
            refresh=state.options.refresh_cache,
        )
    state.answers = answers
    state.engine_stats = stats.to_json()
    state.request_costs.update(stats.costs)
    judged = run_judge_phase(request.config, state, work, answers)  # judged metrics: the judge's turn
    state.answered = time.perf_counter()
    yield answers
    if judged is not None:
        end_judge_phase(judged)


def _answered_doc(item: pytest.Function, ref: DocRef) -> Doc:
    """The item's document with its answers (computed now if this worker's pass lacked them,
    e.g. an item re-sent after a worker crashed)."""
    state = state_of(item.config)
    answers = item._request.getfixturevalue("lmeval_answers")
    work = state.work[item.nodeid]
    missing = [r for r in work.requests if r not in answers]
    if missing:
        backend = lambda: item._request.getfixturevalue("lm")  # noqa: E731
        with _stop_on_failure(state):
            extra, _ = run_requests(backend, missing, progress_bar(item.config), cache=state.open_cache())
        answers.update(extra)
    check_answers(work.requests, answers)  # a document the backend gave up on, or with NaN answers
    return Doc(state.tasks[ref.task], work, answers, state.wants_samples)


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
    state = state_of(pyfuncitem.config)
    doc = _answered_doc(pyfuncitem, ref)
    pyfuncitem.funcargs[argname] = doc
    counts = bool(mark.kwargs.get("pass_rate"))
    try:
        result = yield
    except (AssertionError, pytest.fail.Exception):
        if doc.scoring_error is not None:  # scoring itself failed: not scored, not a failed check
            pyfuncitem.stash[SCORED] = _not_scored(ref, doc.scoring_error)
            raise
        _keep(pyfuncitem, ref, lambda: _record(doc, ref, False if counts else None, state.request_costs))
        raise
    except BaseException as exc:
        pyfuncitem.stash[SCORED] = _not_scored(ref, exc)
        raise
    _keep(pyfuncitem, ref, lambda: _record(doc, ref, True if counts else None, state.request_costs))
    if state.options.item_outcome == "correct" and doc.correct is False:
        shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in doc.metrics.items())
        raise AssertionError(f"{doc.id} answered wrong ({shown})")
    return result


def _record(doc: Doc, ref: DocRef, passed: bool | None, costs: dict) -> dict[str, Any]:
    """The document's record, with its confidence (multiple choice) for calibration, its
    perturbation, and what its requests cost (efficiency.py)."""
    record = doc.record(passed=passed)
    record[efficiency.KEY] = efficiency.of_document(doc.work.requests, costs)
    confidence = doc_confidence(doc.task, doc.work, doc.responses)
    if confidence is not None:
        record[CONFIDENCE] = confidence
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


# -- reports --------------------------------------------------------------------------------------
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Generator:
    report = yield
    record = item.stash.get(SCORED, None)
    if record is not None and (call.when == "call" or (call.when == "setup" and report.failed)):
        # Plain JSON data: xdist serializes extra report attributes and restores them.
        report.lmeval = record
        item.stash[SCORED] = None
    return report


class _Collector:
    """Receives every test report on the controlling process (also under xdist)."""

    def __init__(self, state: LmevalState) -> None:
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, "lmeval", None)
        if record is None or self.state.is_worker:
            return
        if "error" in record:
            self.state.failures.append(record)
        else:
            (self.state.perturbed if record.get("perturbation") else self.state.records).append(record)


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator:
    """After every document ran (on all workers): judge the gates, and report each as a test
    of its own, so terminal, JUnit XML and the exit code all show it."""
    result = yield
    state = state_of(session.config)
    if not state.is_worker and not state.stopped and (state.records or state.failures):
        log_gates(session, summary.conclude(state))
    return result


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:  # xdist controller: a worker finished
    out = getattr(node, "workeroutput", {}).get("lmeval")  # none from a worker that died
    if out:
        state = state_of(node.config)
        state.merge_worker(out["engine"], out["model_info"])
        state.worker_cache = state.worker_cache or out.get("cache")
        state.stopped = state.stopped or out.get("stopped")
        for task, doc_id, status, reason in out.get("unscored", ()):
            unscored_of(node.config).add((task, doc_id), reason, status)


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: Any, sched: Any) -> None:  # xdist controller
    """A worker died (killed, out of host memory) while running `crashitem`: xdist fails that
    item; the document is listed as not run, and the worker's other documents with it (the
    shard scheduler gives them to no other worker, see distribute.py)."""
    node = getattr(report, "node", None)
    name = getattr(getattr(node, "gateway", None), "id", "?")
    config = getattr(sched, "config", None) or node.config
    unscored_of(config).add(doc_of_nodeid(crashitem), f"xdist worker {name} died while running it")


def _left_unscored(session: pytest.Session, state: LmevalState, exitstatus: int) -> None:
    """On the controller: every selected document with neither a score nor an error, and why."""
    gaps = unscored_of(session.config)
    gaps.interrupted = exitstatus == pytest.ExitCode.INTERRUPTED and state.stopped is None
    if gaps.interrupted:
        why = "the run was interrupted (Ctrl-C) before it was scored"
    else:
        why = f"the session stopped early ({session.shouldfail or session.shouldstop or 'before it ran'})"
    if state.work:  # a run without xdist: this process ran every document
        gaps.docs.update(refused(state.work.values(), state.answers))
        done = {(r["task"], r["doc_id"]) for r in state.records + state.failures + state.perturbed}
        for work in state.work.values():
            if (work.task, work.doc_id) not in done:
                gaps.add((work.task, work.doc_id), why)
        cache = state.open_cache()
        if gaps.interrupted and cache is not None:
            needed = {r for w in state.work.values() for r in w.requests}
            gaps.cached, gaps.total = len(cache.lookup(needed)), len(needed)
    elif gaps.scheduler is not None:  # xdist: what no worker got to
        for nodeid in gaps.scheduler.left_over():
            gaps.add(doc_of_nodeid(nodeid), why)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = state_of(session.config)
    if state.is_worker:
        mine = [state.work[i.nodeid] for i in _my_items(session) if i.nodeid in state.work]
        out = {"engine": state.engine_stats, "model_info": state.model_info, "stopped": state.stopped}
        out["cache"] = state.cache_record()  # the controller opens no cache: it reports the workers'
        out["unscored"] = [[t, d, status, why] for (t, d), (status, why) in refused(mine, state.answers).items()]
        session.config.workeroutput["lmeval"] = out
        return
    _left_unscored(session, state, exitstatus)
    gaps = unscored_of(session.config)
    errors = any(status == ERROR for status, _ in gaps.docs.values())
    if state.records or state.failures or state.stopped or errors:
        summary.finish(state)  # partial or not: what was scored is written, the rest listed
    if state.stopped:  # the backend gave up: the run did not do what was asked
        session.exitstatus = pytest.ExitCode.INTERRUPTED
    elif (gaps.docs or state.failures) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(prefix: list, summary: list, postfix: list, session: pytest.Session) -> None:
    """With pytest-html, its report carries the same results table and gates."""
    state = state_of(session.config)
    if state.results is not None and not state.is_worker:
        from .report.html import summary_fragment

        prefix.append(summary_fragment(state))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = state_of(config)
    if state.is_worker:
        return
    summary.print_summary(state, terminalreporter)
    summary.print_unscored(state, terminalreporter)
