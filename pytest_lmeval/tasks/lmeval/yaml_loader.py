"""Safe loading of lm-eval style task YAML: `include:` chains and `!function` helpers.

YAML is parsed with a SafeLoader subclass; the only extension is `!function mod.fn`, which
imports `mod.py` from the YAML file's own folder (never from elsewhere), as lm-eval does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import random
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ...core.errors import LmevalError


def _import_helper(yaml_path: Path, dotted: str) -> Callable[..., Any]:
    *module_parts, fn_name = dotted.split(".")
    if not module_parts:
        raise LmevalError(f"{yaml_path}: !function {dotted!r} must be 'module.function'")
    module_path = yaml_path.parent / f"{'/'.join(module_parts)}.py"
    if not module_path.is_file():
        raise LmevalError(f"{yaml_path}: !function {dotted!r}: {module_path} does not exist")
    mod_name = f"lmeval_task_helpers.{module_path.parent.name}.{'.'.join(module_parts)}"
    module = sys.modules.get(mod_name)
    if module is None or getattr(module, "__file__", None) != str(module_path):
        spec = importlib.util.spec_from_file_location(mod_name, module_path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        _prepare_helper_data(module_path)
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[mod_name]  # a half-imported module would hide this error from the next task
            raise
    try:
        return getattr(module, fn_name)
    except AttributeError:
        raise LmevalError(f"{yaml_path}: !function {dotted!r}: {module_path} has no {fn_name!r}") from None


def _prepare_helper_data(module_path: Path) -> None:
    """IFEval's helpers (and others using nltk's sentence splitter) try to download punkt_tab
    when they are imported: provide it offline first, from a package (nltk_punkt.py)."""
    try:
        text = module_path.read_text(encoding="utf-8")
    except OSError:
        return
    if "ifeval" in text or "nltk" in text:
        from .nltk_punkt import ensure_punkt_tab

        ensure_punkt_tab()


# Python's global random generator as one lm-eval run advances it: simple_evaluate seeds it 0,
# then each task's process_docs runs as the task loads (in --tasks order, a group's members in
# its order), and a helper that draws from it (GPQA's choice shuffle) continues where the last
# one stopped. Dataset.map caches each result beside the data's Arrow files, so a split processed
# again (the few-shot pool, the evaluated documents) is the first result, not a new shuffle.
@dataclass
class RunRandom:
    """The generator's state after the last helper that drew from it, and what each helper
    first gave for a data set (by the helper's name and the data set's fingerprint)."""

    state: Any = None
    first: dict[tuple[str, str], Any] = field(default_factory=dict)


_RANDOM: ContextVar[RunRandom | None] = ContextVar("lmeval_run_random", default=None)


@contextlib.contextmanager
def run_random() -> Iterator[RunRandom]:
    """One run's generator: helpers called inside it continue each other's draws (each pytest
    session opens its own, as each lm-eval run seeds afresh); outside any, each call starts at
    seed 0."""
    own = RunRandom()
    token = _RANDOM.set(own)
    try:
        yield own
    finally:
        _RANDOM.reset(token)


def _seeded(fn: Callable[..., Any], dataset: Any, *args: Any, **kwargs: Any) -> Any:
    """A process_docs helper run on the run's generator (see RunRandom), the caller's own global
    random state restored after: unseeded, GPQA's choices would differ from run to run and
    between xdist workers."""
    run = _RANDOM.get() or RunRandom()
    fingerprint = getattr(dataset, "_fingerprint", None)
    key = (f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}", str(fingerprint))
    if fingerprint is not None and key in run.first:
        return run.first[key]
    outer = random.getstate()
    if run.state is not None:
        random.setstate(run.state)
    else:
        random.seed(0)
    before = random.getstate()
    try:
        out = fn(dataset, *args, **kwargs)
        after = random.getstate()
        if after != before:  # it drew from the generator: later calls continue from here
            run.state = after
            if fingerprint is not None:
                run.first[key] = out
        return out
    finally:
        random.setstate(outer)


class FunctionRef:
    """A `!function` reference, resolved on first use so that scanning YAML stays cheap."""

    def __init__(self, yaml_path: Path, dotted: str) -> None:
        self.yaml_path = yaml_path
        self.dotted = dotted
        self._fn: Callable[..., Any] | None = None

    def load(self) -> Callable[..., Any]:
        """Import the helper (its module's top level runs: lm-eval registrations happen here)."""
        if self._fn is None:
            self._fn = _import_helper(self.yaml_path, self.dotted)
        return self._fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._fn is None:
            self._fn = _import_helper(self.yaml_path, self.dotted)
        if args and type(args[0]).__name__ == "Dataset":  # process_docs: the whole data set
            return _seeded(self._fn, *args, **kwargs)
        return self._fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"!function {self.dotted}"


def _loader_for(path: Path) -> type[yaml.SafeLoader]:
    class TaskLoader(yaml.SafeLoader):
        pass

    def function(loader: yaml.SafeLoader, node: yaml.Node) -> FunctionRef:
        return FunctionRef(path, loader.construct_scalar(node))  # type: ignore[arg-type]

    TaskLoader.add_constructor("!function", function)
    return TaskLoader


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse one YAML file; a syntax error becomes 'file:line: message'."""
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=_loader_for(path))  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise LmevalError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except OSError as exc:
        raise LmevalError(f"{path}: cannot read: {exc.strerror}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LmevalError(f"{path}:1: a task file must hold a mapping, not {type(data).__name__}")
    return data


def load_task_yaml(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a task YAML, merging `include:` files beneath it (the including file wins)."""
    path = path.resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise LmevalError(f"{path}: include cycle: {chain}")
    data = read_yaml(path)
    include = data.pop("include", None)
    if include is None:
        return data
    includes = include if isinstance(include, list) else [include]
    merged: dict[str, Any] = {}
    for name in includes:
        inc_path = Path(name) if Path(name).is_absolute() else path.parent / name
        if not inc_path.is_file():
            raise LmevalError(f"{path}: include: {name!r} not found (looked for {inc_path})")
        merged.update(load_task_yaml(inc_path, (*_seen, path)))
    merged.update(data)
    return merged
