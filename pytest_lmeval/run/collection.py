"""Collection: which benchmark files are read, one item per selected document (and per
perturbation), and each item's requests built before any test body runs."""

from __future__ import annotations

import json
import keyword
from pathlib import Path

import pytest
import yaml

from ..core.errors import LmevalError
from ..features import perturbation
from ..features.robustness import Robustness
from ..models.registry import check_model
from ..report.output_folder import hold_output_folder
from ..report.results import task_config
from ..tasks.benchmark import MARK as BENCHMARK_MARK
from .doc_ref import DocRef, lmeval_ref
from .run import Run

# pytest's own marks, and ours: a task so named gets no marker of its name
_PYTEST_MARKS = {"skip", "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings", "lmeval"}


class Collection:
    """The run's collection hooks (registered by plugin.py)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.selection = run.selection
        self._holders: dict[str, list[str]] | None = None  # task -> the groups and tags holding it
        self._registered: set[str] = set()

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
            for i in sel.doc_ids(name):
                refs += [DocRef(name, i), *(DocRef(name, i, p) for p in shown)]
        metafunc.parametrize(mark.kwargs["argname"], refs, ids=[str(r) for r in refs])

    # Before pytest's -m and -k filters (so `-m lmeval` selects the documents), after the items
    # of uncollected tasks are added (OrphanItems, registered later, runs first among tryfirst).
    # A marker per task and per group or tag holding it (`-m mmlu_anatomy`, `-m mmlu_stem`), where
    # the name is an identifier pytest's marks allow; registered, so --strict-markers accepts them.
    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        marks: dict[str, list[str]] = {}
        for item in items:
            ref = lmeval_ref(item)
            if ref is None:
                continue
            item.add_marker("lmeval")
            if ref.task not in marks:
                marks[ref.task] = self._markers(config, ref.task)
            for name in marks[ref.task]:
                item.add_marker(name)

    def _parents(self) -> dict[str, list[str]]:
        """Each name's direct holders among the groups and tags the registry knows (read as
        declared: a tag of lm-eval's catalogue is not loaded for this)."""
        registry = self.selection.registry
        out: dict[str, list[str]] = {}
        for tag, members in registry.tags.items():
            for member in members:
                out.setdefault(member, []).append(tag)
        for group in list(registry.groups):
            try:
                members = registry.children(group)
            except LmevalError:
                continue
            for member in members:
                out.setdefault(member, []).append(group)
        return out

    def _markers(self, config: pytest.Config, task: str) -> list[str]:
        if self._holders is None:
            self._holders = self._parents()
        above, todo = set(), [task]
        while todo:  # the groups holding the task, the groups holding those, ...
            for parent in self._holders.get(todo.pop(), ()):
                if parent not in above:
                    above.add(parent)
                    todo.append(parent)
        names = [task, *sorted(above - {task})]
        names = [n for n in names if n.isidentifier() and not keyword.iskeyword(n) and n not in _PYTEST_MARKS]
        for name in names:
            if name not in self._registered:
                self._registered.add(name)
                config.addinivalue_line("markers", f"{name}: a document of the lm-eval task, group or tag {name}")
        return names

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """An xdist controller collects nothing: it holds the output folder before the workers
        start, as a single process does after its collection."""
        run = self.run
        if session.config.pluginmanager.hasplugin("dsession") and run.options.model is not None:
            hold_output_folder(run.config, run.output_dir(), run.options.output_path)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        run = self.run
        self.selection.check_samples()
        run.build_requests(session.items)
        if (run.options.write_out or run.options.show_config) and not run.is_worker:
            _show(run, session.items)
        if run.work and not run.is_worker:  # a folder the reports cannot go to, or in use: one line, before any loads
            hold_output_folder(run.config, run.output_dir(), run.options.output_path)
        if run.work and run.options.model is not None:  # a model that cannot load: one line, before any loads
            check_model(run.options.model, run.options.batch_size)


class _Dumper(yaml.SafeDumper):
    """YAML with multi-line strings (prompt templates, delimiters) as blocks."""


_Dumper.add_representer(
    str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s and s.strip() else None)
)


def _show(run: Run, items: list[pytest.Item]) -> None:
    """lm-eval's --write_out (each task's first selected document: its prompt and target) and
    --show_config (each task's configuration as it runs), printed before anything runs."""
    firsts: dict[str, DocRef] = {}
    for item in items:
        ref = lmeval_ref(item)
        if ref is not None and not ref.perturbation:
            firsts.setdefault(ref.task, ref)
    reporter = run.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not firsts:
        return
    if run.options.show_config:
        reporter.write_sep("=", "lmeval show_config")
        for name in firsts:
            config = json.loads(json.dumps(task_config(run.tasks[name]), default=str))
            text = yaml.dump({name: config}, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
            reporter.write_line(text.rstrip("\n"))
    if run.options.write_out:
        reporter.write_sep("=", "lmeval write_out")
        for name, ref in firsts.items():
            work = run.tasks[name].build(ref.doc_id)
            target = work.target
            if work.choices and isinstance(target, int) and 0 <= target < len(work.choices):
                target = f"{target} ({work.choices[target]})"  # the index, as lm-eval prints it, and the choice
            reporter.write_line(f"Task: {name}; document {ref.doc_id}; context prompt (starting on next line):")
            reporter.write_line(f"{work.prompt}\n(end of prompt on previous line)")
            reporter.write_line(f"target (starting on next line):\n{target}\n(end of target on previous line)")
