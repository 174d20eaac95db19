"""pytest hooks and fixtures: options, collection, the model run, and the summary. Thin on
purpose: the work lives in the modules these hooks call."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from . import distribute
from .engine import run_requests
from .errors import LmevalError
from .models.base import Backend, RequestFailed, check_model, load_backend, redact_args_text
from .options import addoptions
from .orphans import OrphanItems
from .progress import progress_bar
from .report import summary
from .report.gate_reports import log_gates
from .scoring import ScoredDoc, score
from .session import DocRef, LmevalState, lmeval_ref

STATE = pytest.StashKey[LmevalState]()
SCORED = pytest.StashKey[dict[str, Any]]()


def state_of(config: pytest.Config) -> LmevalState:
    return config.stash[STATE]


def pytest_addoption(parser: pytest.Parser) -> None:
    addoptions(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if config.getoption("lmeval_tasks") != "list":
        return None
    state = LmevalState.from_config(config)
    print(state.registry.describe())
    return 0


def pytest_configure(config: pytest.Config) -> None:
    gpus = getattr(config, "workerinput", {}).get(distribute.GPUS_KEY)
    if gpus:  # an xdist worker pinned to its GPUs, before anything initialises CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    config.addinivalue_line("markers", "lmeval: a benchmark document evaluated by pytest-lmeval")
    state = LmevalState.from_config(config)
    config.stash[STATE] = state
    config.pluginmanager.register(_Collector(state), "lmeval-collector")
    config.pluginmanager.register(OrphanItems(state), "lmeval-orphans")


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
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    owns = state_of(config).owns_test_file(collection_path)
    return None if owns is None or owns else True


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "lmeval_doc" not in metafunc.fixturenames:
        return
    state = state_of(metafunc.config)
    owner = getattr(metafunc.definition.parent, "lmeval_task", None)  # orphans.TaskModule
    tasks = [state.tasks[owner]] if owner else state.tasks_in(Path(metafunc.module.__file__).parent)
    refs = [DocRef(t.name, i) for t in tasks for i in range(len(t.docs))]
    metafunc.parametrize("lmeval_doc", refs, ids=[str(r) for r in refs], indirect=True)


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
    backend = load_backend(spec, device=state.options.device, batch_size=state.options.batch_size)
    state.model_info = backend.info()
    return backend


def _my_items(session: pytest.Session) -> list[pytest.Item]:
    workerinput = getattr(session.config, "workerinput", None)
    if not workerinput or not workerinput.get(distribute.WORKERINPUT_KEY):
        return session.items
    span = distribute.shard(len(session.items), int(workerinput["workercount"]), distribute.worker_index(workerinput))
    return session.items[span.start : span.stop]


@contextlib.contextmanager
def _stop_on_failure(state: LmevalState) -> Generator[None, None, None]:
    """A backend that gave up on a request stops the run with one line naming the server's
    error and the documents that asked (not one identical error per item)."""
    try:
        yield
    except RequestFailed as exc:
        docs = [f"{w.task}-{w.doc_id}" for w in state.work.values() if exc.request in w.requests]
        where = ", ".join(docs[:5]) + (f" and {len(docs) - 5} more" if len(docs) > 5 else "")
        kept = "; answers finished so far are cached, a rerun resumes" if state.open_cache() is not None else ""
        at = f"a {exc.request.kind} request of document {where or '?'}"
        state.stopped = f"lmeval: stopped at {at}: {exc.reason}{kept}"
        pytest.exit(state.stopped, returncode=pytest.ExitCode.INTERRUPTED)


@pytest.fixture(scope="session")
def lmeval_answers(request: pytest.FixtureRequest) -> dict:
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
    return answers


@pytest.fixture
def lmeval_doc(request: pytest.FixtureRequest, lmeval_answers: dict) -> ScoredDoc:
    """The document of this item, scored. Benchmarks' test functions take this fixture."""
    state = state_of(request.config)
    ref: DocRef = request.param
    work = state.work[request.node.nodeid]
    missing = [r for r in work.requests if r not in lmeval_answers]
    if missing:  # not in this worker's shard (e.g. re-sent after a worker crashed)
        with _stop_on_failure(state):
            extra, _ = run_requests(
                lambda: request.getfixturevalue("lm"), missing, progress_bar(request.config), cache=state.open_cache()
            )
        lmeval_answers.update(extra)
    task = state.tasks[ref.task]
    try:
        scored = score(task, work, lmeval_answers, state.wants_samples)
    except Exception as exc:
        request.node.stash[SCORED] = {
            "task": ref.task,
            "doc_id": ref.doc_id,
            "error": f"{type(exc).__name__}: {exc}",
        }
        raise
    scored.item_outcome = state.options.item_outcome
    request.node.stash[SCORED] = scored.record
    for metric, value in scored.metrics.items():
        request.node.user_properties.append((metric, value))
    return scored


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
        (self.state.failures if "error" in record else self.state.records).append(record)


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
    out = getattr(node, "workeroutput", {}).get("lmeval")
    if out:
        state = state_of(node.config)
        state.merge_worker(out["engine"], out["model_info"])
        state.stopped = state.stopped or out.get("stopped")


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = state_of(session.config)
    if state.is_worker:
        out = {"engine": state.engine_stats, "model_info": state.model_info, "stopped": state.stopped}
        session.config.workeroutput["lmeval"] = out
    if state.is_worker or state.stopped or not (state.records or state.failures):
        return  # a stopped run's scores are partial: no results.json that could pass for a whole run
    summary.finish(state)


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(prefix: list, summary: list, postfix: list, session: pytest.Session) -> None:
    """With pytest-html, its report carries the same results table and gates."""
    state = state_of(session.config)
    if state.results is not None and not state.is_worker:
        from .report.html import summary_fragment

        prefix.append(summary_fragment(state))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = state_of(config)
    if state.stopped and not state.is_worker:
        terminalreporter.write_line(state.stopped, red=True)  # under xdist the worker's exit message is lost
        return
    if state.is_worker or not (state.records or state.failures):
        return
    summary.print_summary(state, terminalreporter)
