"""Collection: which benchmark files are read, one item per selected document (and per
perturbation), and each item's requests built before any test body runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..features import perturbation
from ..features.robustness import Robustness
from ..models.registry import check_model
from ..report.output_folder import hold_output_folder
from ..tasks.benchmark import MARK as BENCHMARK_MARK
from .doc_ref import DocRef, lmeval_ref
from .run import Run


class Collection:
    """The run's collection hooks (registered by plugin.py)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.selection = run.selection

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session: pytest.Session) -> None:
        self.selection.prepare(list(session.config.args))

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool | None:
        if self.selection.tasks_only:  # `pytest --tasks mmlu` with no paths: the tasks' benchmark files alone
            return True
        if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
            return None
        owns = self.selection.owns_test_file(collection_path)
        return None if owns is None or owns else True

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        mark = metafunc.definition.get_closest_marker(BENCHMARK_MARK)
        if mark is None:
            return
        sel = self.selection
        owner = getattr(metafunc.definition.parent, "lmeval_task", None)  # uncollected.TaskModule
        names = [owner] if owner else sel.benchmark_tasks(mark.args, Path(metafunc.module.__file__))
        sel.parametrized.update(names)
        marked = [n for m in metafunc.definition.iter_markers(perturbation.MARK) for n in m.args]
        perturbations = Robustness.of(metafunc.config).for_function(marked)
        refs = []
        for name in names:
            task = sel.tasks[name]
            shown = perturbations if perturbations and perturbation.supports(task) else ()
            for i in range(len(task.docs)):
                refs += [DocRef(name, i), *(DocRef(name, i, p) for p in shown)]
        metafunc.parametrize(mark.kwargs["argname"], refs, ids=[str(r) for r in refs])

    # Before pytest's -m and -k filters (so `-m lmeval` selects the documents), after the items
    # of uncollected tasks are added (OrphanItems, registered later, runs first among tryfirst).
    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            if lmeval_ref(item) is not None:
                item.add_marker("lmeval")

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """An xdist controller collects nothing: it holds the output folder before the workers
        start, as a single process does after its collection."""
        run = self.run
        if session.config.pluginmanager.hasplugin("dsession") and run.options.model is not None:
            hold_output_folder(run.config, run.output_dir(), run.options.output_path)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        run = self.run
        run.build_requests(session.items)
        if run.work and not run.is_worker:  # a folder the reports cannot go to, or in use: one line, before any loads
            hold_output_folder(run.config, run.output_dir(), run.options.output_path)
        if run.work and run.options.model is not None:  # a model that cannot load: one line, before any loads
            check_model(run.options.model, run.options.batch_size)
