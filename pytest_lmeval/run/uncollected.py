"""Items for selected tasks that collection did not reach (see uncollected_tests.py for the user's view).

After normal collection, and before `-k`/`-m` deselection (so those work on these items too),
each such task's YAML file becomes a `pytest.Module` whose Python object is uncollected_tests.py, and
its items are appended to the session's.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from . import uncollected_tests

if TYPE_CHECKING:
    from .selection import Selection


class TaskModule(pytest.Module):
    """A task's YAML file, collected as a test module running uncollected_tests.test_lmeval."""

    lmeval_task: str = ""

    def _getobj(self) -> ModuleType:
        return uncollected_tests


def _node_id(path: Path, rootpath: Path, root: Path) -> str:
    """Relative to the rootdir when inside it, else to the folder holding the task's benchmark
    folder (lm-eval's catalogue: `lm_eval/tasks/...`)."""
    bases = (rootpath, root.parent.parent) if root.name == "tasks" and root.parent.name == "lm_eval" else (rootpath,)
    for base in (*bases, root.parent):
        try:
            return path.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    return path.as_posix()


class OrphanItems:
    """Registered as a plugin: adds the items of selected tasks that collection did not reach.

    A task declared in a benchmark file outside the collected paths (the library installed with
    the package, `pytest --tasks mmlu` from any folder) brings that file in; a YAML task with
    no benchmark file becomes a TaskModule."""

    def __init__(self, selection: Selection) -> None:
        self.selection = selection

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, items: list[pytest.Item]) -> None:
        registry = self.selection.registry
        for name in self.selection.uncollected_tasks():
            if name in self.selection.parametrized:  # brought in with an earlier task's file
                continue
            task = self.selection.tasks[name]
            root = registry.roots.get(name, task.config.source.parent)
            owner = registry.owner(name)
            if owner is not None:
                module = pytest.Module.from_parent(
                    session, path=owner, nodeid=_node_id(owner, session.config.rootpath, root)
                )
            else:
                source = task.config.source
                module = TaskModule.from_parent(
                    session, path=source, nodeid=_node_id(source, session.config.rootpath, root)
                )
                module.lmeval_task = name
            items.extend(session.genitems(module))
