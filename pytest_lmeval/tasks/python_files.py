"""Reading a Python benchmark file for the registry: import it and keep what it declared.

The registry needs task names before pytest collects anything (`--tasks mmlu` must resolve, an
unselected file must not be imported by pytest at all), so it imports each benchmark file once
under a private module name. pytest imports the file again when it collects it; declarations
are plain values, so both imports declare the same tasks and the plugin matches them by name.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import LmevalError
from . import declare
from .config import GroupConfig, TaskConfig


@dataclass
class Declared:
    tasks: list[TaskConfig] = field(default_factory=list)
    groups: list[GroupConfig] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)  # names the file's @benchmark functions run


def is_benchmark_file(path: Path, *, tests_only: bool = False) -> bool:
    """A Python file that uses the declaration API (cheap: the text is read, nothing imported);
    with `tests_only`, a test file that also applies @benchmark."""
    if path.suffix != ".py" or path.name in ("__init__.py", "conftest.py"):
        return False
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    uses = "import pytest_lmeval" in text or "from pytest_lmeval" in text
    if not uses or not tests_only:
        return uses
    return path.name.startswith("test_") and "benchmark(" in text and _has_benchmark_function(text)


def _has_benchmark_function(text: str) -> bool:
    """A module-level function decorated with `@benchmark(...)` or `@<module>.benchmark(...)`
    (the text of a benchmark inside a string, as tests write them, does not count)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return True  # let the import report the error, with its line
    for node in tree.body:
        for dec in getattr(node, "decorator_list", ()):
            func = dec.func if isinstance(dec, ast.Call) else dec
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "benchmark":
                return True
    return False


def read_benchmark_file(path: Path) -> Declared:
    name = "_lmeval_benchmark_" + "_".join(path.resolve().with_suffix("").parts[-3:]).replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # sibling helper modules import as pytest's rootdir mode allows
    try:
        with declare.recording() as found:
            spec.loader.exec_module(module)
    except LmevalError as exc:
        raise LmevalError(f"{path}: {exc}") from None
    except Exception as exc:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path.resolve())]
        line = f":{frames[-1].lineno}" if frames else ""
        raise LmevalError(f"{path}{line}: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(folder)
    out = Declared()
    for obj in found:
        if isinstance(obj, TaskConfig):
            out.tasks.append(obj)
        elif isinstance(obj, GroupConfig):
            out.groups.append(obj)
        elif isinstance(obj, tuple):
            out.runs.extend(_name(o) for o in obj)
    return out


def _name(obj: TaskConfig | GroupConfig | str) -> str:
    if isinstance(obj, TaskConfig):
        return obj.task
    if isinstance(obj, GroupConfig):
        return obj.group
    return str(obj)
