"""Task configs from lm-eval's YAML where a key hands part of the task to Python: `class:`
(lm-eval's own Task subclass, which class_tasks.py runs) and `custom_dataset:` (a loader of the
documents). The registry reads YAML through `task_config_from_yaml`; the generic checks are
config_parsing.py's, which knows nothing of these keys, so the dependency runs one way.

What a class cannot run here is refused when its config is read, in one line: unitxt recipes
without the `unitxt` package, multimodal classes, classes that execute model-written code,
and classes whose module loads an HF `evaluate` metric that cannot be loaded.

A `custom_dataset: !function` loader is called as lm-eval calls it (the task's metadata and
dataset_kwargs as keyword arguments) when the documents are first needed.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.errors import LmevalError
from ...scoring import lmeval_metrics
from ...scoring.filters import DEFAULT_PIPELINE
from ..config import TaskConfig
from ..config_parsing import task_config_from_dict
from ..run_metadata import with_run_metadata

# Keys of a class task's YAML that are the registry's, not the class's.
_STRUCTURAL_KEYS = ("task", "class", "tag", "group", "task_list")


def task_config_from_yaml(data: dict[str, Any], source: Path) -> TaskConfig:
    """A task config from lm-eval YAML: a `class:` task as its class gives it, a
    `custom_dataset:` task with the loader as its data source, any other as the dict says."""
    name = data.get("task")
    if not isinstance(name, str):
        return task_config_from_dict(data, source)  # which names the problem
    if data.get("class") is not None:
        return class_task_config(name, data, source)
    if data.get("custom_dataset") is not None:
        # The loader gets the task's metadata with its source, as lm-eval's TaskFactory adds it.
        metadata = {**(data.get("metadata") or {}), "config_source": str(source)}
        where = f"{source}: task {name!r}"
        data = {**data, "data": custom_dataset(data["custom_dataset"], metadata, data.get("dataset_kwargs"), where)}
    return task_config_from_dict(data, source)


def first_line(exc: BaseException) -> str:
    """An exception as one line of an error message: its type and its first line."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


@dataclass(frozen=True, eq=False)
class ClassRef:
    """The `class:` reference of a task's YAML, with the rest of that YAML (what lm-eval hands
    the constructor); results.json shows it as the reference."""

    ref: Any
    config: Mapping[str, Any]

    def load(self) -> type:
        return self.ref.load() if hasattr(self.ref, "load") else self.ref

    def describe(self) -> str:
        return repr(self.ref) if hasattr(self.ref, "dotted") else f"{self.ref.__module__}.{self.ref.__qualname__}"

    def __repr__(self) -> str:
        return self.describe()


def load_class(ref: Any, where: str) -> type:
    try:
        cls = ref.load() if hasattr(ref, "load") else ref
    except LmevalError as exc:
        raise LmevalError(f"{where}: {exc}") from None
    except Exception as exc:  # the class's module imports packages that are not installed
        raise LmevalError(
            f"{where}: its task class {ref!r} does not import ({first_line(exc)}): install what its module needs"
        ) from None
    from lm_eval.api.task import Task as LmTask

    if not (isinstance(cls, type) and issubclass(cls, LmTask)):
        raise LmevalError(f"{where}: 'class' must name a subclass of lm-eval's Task, got {ref!r}")
    return cls


_EVALUATE_LOAD = re.compile(r"""evaluate\.load\(\s*["']([\w\-/]+)["']""")


def _evaluate_metrics(cls: type) -> list[str]:
    """The HF evaluate metrics the class's module loads by name (`evaluate.load("squad_v2")`)."""
    try:
        text = inspect.getsource(inspect.getmodule(cls))  # type: ignore[arg-type]
    except (OSError, TypeError):
        return []
    return sorted(set(_EVALUATE_LOAD.findall(text)))


def class_task_config(name: str, data: dict[str, Any], source: Path) -> TaskConfig:
    """The config of a `class:` task: the class and its YAML, checked for what cannot run."""
    where = f"{source}: task {name!r}"
    ref = data["class"]
    if ("unitxt" in repr(ref).lower() or data.get("recipe") is not None) and importlib.util.find_spec("unitxt") is None:
        raise LmevalError(
            f"{where} is a unitxt recipe ({ref!r}): lm-eval's class runs it with the unitxt package, "
            "which is not installed: pip install unitxt"
        )
    if not lmeval_metrics.installed():
        raise LmevalError(f'{where} is lm-eval\'s task class {ref!r}: pip install "pytest-lmeval[catalogue]"')
    cls = load_class(ref, where)
    if getattr(cls, "MULTIMODAL", False) or data.get("doc_to_image") is not None:
        raise LmevalError(f"{where}: image inputs (the multimodal task class {cls.__name__}) are not supported")
    if getattr(cls, "UNSAFE_CODE", False) or data.get("unsafe_code"):
        raise LmevalError(
            f"{where} executes model-written code (task class {cls.__name__}); pytest-lmeval does not run such tasks"
        )
    for metric in _evaluate_metrics(cls):
        problem = lmeval_metrics.hf_evaluate_problem(metric)
        if problem:
            raise LmevalError(f"{where}: metric {metric!r} is an HF evaluate metric, which {problem}")
    tags = data.get("tag") or []
    metadata = data.get("metadata")
    return TaskConfig(
        task=name,
        source=source,
        dataset_path=getattr(cls, "DATASET_PATH", None),
        dataset_name=getattr(cls, "DATASET_NAME", None),
        tag=[tags] if isinstance(tags, str) else list(tags),
        metadata=dict(metadata) if isinstance(metadata, dict) else {},
        task_class=ClassRef(ref, {k: v for k, v in data.items() if k not in _STRUCTURAL_KEYS[1:]}),
        filters=(DEFAULT_PIPELINE,),
    )


# -- custom_dataset ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CustomDataset:
    """The documents a `custom_dataset` loader returns (a mapping of split to rows), loaded once."""

    loader: Callable[..., Any]
    metadata: Mapping[str, Any]
    kwargs: Mapping[str, Any]
    _loaded: dict[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)  # by the call's arguments

    def _arguments(self, task: str) -> dict[str, Any]:
        """lm-eval's call: `loader(**metadata, **dataset_kwargs)`, the run's metadata merged in."""
        metadata = with_run_metadata(self.metadata)
        both = set(metadata) & set(self.kwargs)
        if both:
            raise LmevalError(
                f"task {task!r}: custom_dataset gets {sorted(both)} from both metadata and dataset_kwargs"
            )
        return {**metadata, **self.kwargs}

    def _splits(self, task: str) -> Mapping[str, Any]:
        arguments = self._arguments(task)
        key = repr(sorted(arguments.items()))  # loaded once per arguments: another run's metadata loads afresh
        if key not in self._loaded:
            try:
                out = self.loader(**arguments)
            except LmevalError:
                raise
            except Exception as exc:  # offline, a missing package, a bad argument
                raise LmevalError(
                    f"task {task!r}: its custom_dataset loader {self.loader!r} failed ({first_line(exc)}); "
                    "it reads its data itself (usually from the hub), so run where that works"
                ) from None
            if not isinstance(out, Mapping):
                raise LmevalError(
                    f"task {task!r}: custom_dataset loader {self.loader!r} must return a mapping of split to "
                    f"documents, got {type(out).__name__}"
                )
            self._loaded[key] = out
        return self._loaded[key]

    def rows(self, split: str, data_dir: Path | None, task: str) -> list[dict[str, Any]]:
        splits = self._splits(task)
        if split not in splits:
            raise LmevalError(
                f"task {task!r}: custom_dataset loader {self.loader!r} gave no {split!r} split "
                f"(it gave {sorted(splits)})"
            )
        docs = splits[split]
        return docs.to_list() if hasattr(docs, "to_list") else [dict(d) for d in docs]

    def describe(self) -> str:
        return f"custom_dataset {self.loader!r}"


def without_remote_code(kwargs: dict[str, Any]) -> dict[str, Any]:
    """lm-eval's download drops trust_remote_code under datasets 4, which has no loading scripts."""
    import datasets
    from packaging.version import parse

    if parse(datasets.__version__) >= parse("4.0.0"):
        kwargs.pop("trust_remote_code", None)
    return kwargs


def custom_dataset(loader: Any, metadata: Mapping[str, Any], dataset_kwargs: Any, where: str) -> CustomDataset:
    """lm-eval's call: `custom_dataset(**metadata, **dataset_kwargs)`."""
    if not callable(loader):
        raise LmevalError(f"{where}: custom_dataset must be a !function loader, got {loader!r}")
    return CustomDataset(loader, dict(metadata), without_remote_code(dict(dataset_kwargs or {})))
