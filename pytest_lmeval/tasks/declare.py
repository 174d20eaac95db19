"""Declaring tasks in Python: the output-type declarations (`multiple_choice`, `generate`...)
and `group`, which benchmark files call through `pytest_lmeval`.

Each declaration compiles to the same `TaskConfig` or `GroupConfig` a YAML file gives (through
the same validation), so the engine, cache, reports and gates never know which they run.
Text fields take a format string over the document's fields (`"Question: {question}"`) or a
function of the document; choice and target fields take a field name or a function. Data
sources and few-shot examples are declared in declare_data.py, metrics and filters in
declare_metrics.py; this module re-exports them, as the public facade imports them from here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import LmevalError
from .config import GroupConfig, TaskConfig
from .config_parsing import group_config_from_dict, task_config_from_dict
from .declare_data import Data, Doc, FewShot, Text, declaring_file
from .declare_metrics import Metric, filter_entries, metric_entries
from .sources import Hub

# While the registry imports a benchmark file (python_files.py), what it declares lands here:
# scoped to that import, so two registries reading files in one process never share it.
_RECORDING: ContextVar[list[Any] | None] = ContextVar("lmeval_declared", default=None)


def declared(obj: Any) -> Any:
    """Note a declaration (a task, a group, or a benchmark's references) for the registry."""
    recording = _RECORDING.get()
    if recording is not None:
        recording.append(obj)
    return obj


@contextlib.contextmanager
def recording() -> Iterator[list[Any]]:
    """Collect what the code run inside declares (see `declared`)."""
    found: list[Any] = []
    token = _RECORDING.set(found)
    try:
        yield found
    finally:
        _RECORDING.reset(token)


# -- fields -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Format:
    """A format string over the document's fields, as a function of the document."""

    template: str

    def __call__(self, doc: Doc) -> str:
        return self.template.format_map(doc)

    def describe(self) -> str:
        return self.template


def _text(spec: Text | None) -> Any:
    return _Format(spec) if isinstance(spec, str) else spec


class PerDocument:
    """`process=`: a function applied to each document as it is loaded."""

    per_document = True

    def __init__(self, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.fn = fn

    def __call__(self, docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.fn(dict(d)) for d in docs]

    def __repr__(self) -> str:
        return getattr(self.fn, "__name__", "process")


@dataclass
class _Common:
    data: Data
    fewshot: FewShot | None
    process: Callable | None
    version: Any
    tags: Sequence[str]
    alias: str | None
    override: bool = False
    source: Path = field(default_factory=Path)


def _compile(name: str, output_type: str, common: _Common, fields: dict[str, Any]) -> TaskConfig:
    fs = common.fewshot or FewShot()
    data: dict[str, Any] = {
        "task": name,
        "output_type": output_type,
        "data": common.data.source,
        "test_split": common.data.split,
        "fewshot_split": fs.split,
        "fewshot_delimiter": fs.delimiter,
        "fewshot_excludes_doc": fs.exclude_doc,
        "num_fewshot": fs.n,
        "metadata": _metadata(common.version, common.override),
        "tag": list(common.tags),
        **{k: v for k, v in fields.items() if v is not None},
    }
    if isinstance(common.data.source, Hub):
        data["dataset_path"], data["dataset_name"] = common.data.source.path, common.data.source.name
    fs_config: dict[str, Any] = {"sampler": "first_n" if fs.sampler == "first_n" else "default"}
    if fs.split is not None:
        fs_config["split"] = fs.split
    if fs.samples is not None:
        fs_config["samples"] = [dict(s) for s in fs.samples]
    if fs.prompt is not None:
        fs_config["doc_to_text"] = _text(fs.prompt)
    if fs.target is not None:
        fs_config["doc_to_target"] = fs.target
    data["fewshot_config"] = fs_config
    if fs.seed is not None:
        data["fewshot_seed"] = fs.seed
    if fs.description is not None:
        data["description"] = _text(fs.description)
    if common.process is not None:
        data["process_docs"] = PerDocument(common.process)
    if common.alias:
        data["task_alias"] = common.alias
    return declared(task_config_from_dict(data, common.source))


def _common(data: Data, fewshot: FewShot | None, process, version, tags, alias, override) -> _Common:
    if not isinstance(data, Data):
        raise LmevalError(f"data must be hub(...), local(...) or rows(...), got {data!r}")
    return _Common(data, fewshot, process, version, tuple(tags), alias, bool(override), declaring_file(2))


def _metadata(version: Any, override: bool) -> dict[str, Any]:
    """A declaration's metadata: its version, and whether it knowingly replaces a library task
    of the same name (without it, taking a library task's name is an error)."""
    return {"version": version, **({"override": True} if override else {})}


def multiple_choice(
    name: str,
    *,
    data: Data,
    prompt: Text,
    choices: str | Sequence[str] | Callable[[Doc], Sequence[str]],
    target: str | int | Callable[[Doc], int | str],
    fewshot: FewShot | None = None,
    metrics: Iterable[str | Metric | Callable] = ("acc", "acc_norm"),
    target_delimiter: str = " ",
    process: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    version: Any = 1.0,
    override: bool = False,
    tags: Sequence[str] = (),
    alias: str | None = None,
) -> TaskConfig:
    """One question, several answers: the model's choice is the answer it finds most likely
    after the prompt. `target` gives the right answer's index or text."""
    common = _common(data, fewshot, process, version, tags, alias, override)
    fields = {
        "doc_to_text": _text(prompt),
        "doc_to_choice": list(choices) if isinstance(choices, (list, tuple)) else choices,
        "doc_to_target": target,
        "target_delimiter": target_delimiter,
        "metric_list": metric_entries(metrics),
    }
    return _compile(name, "multiple_choice", common, fields)


def multiple_input(
    name: str,
    *,
    data: Data,
    contexts: Callable[[Doc], Sequence[str]],
    continuation: Text,
    target: str | int | Callable[[Doc], int],
    fewshot: FewShot | None = None,
    metrics: Iterable[str | Metric | Callable] = ("acc",),
    target_delimiter: str = " ",
    process: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    version: Any = 1.0,
    override: bool = False,
    tags: Sequence[str] = (),
    alias: str | None = None,
) -> TaskConfig:
    """The reverse of multiple choice (Winogrande): several contexts, one continuation; the
    model's choice is the context after which the continuation is most likely. `target` is
    the right context's index."""
    common = _common(data, fewshot, process, version, tags, alias, override)
    gold = target if callable(target) else (lambda doc, key=target: doc[key])
    fields = {
        "doc_to_text": lambda doc: int(gold(doc)),
        "doc_to_choice": contexts,
        "doc_to_target": _text(continuation),
        "target_delimiter": target_delimiter,
        "metric_list": metric_entries(metrics),
    }
    return _compile(name, "multiple_choice", common, fields)


def loglikelihood(
    name: str,
    *,
    data: Data,
    prompt: Text,
    target: Text,
    fewshot: FewShot | None = None,
    metrics: Iterable[str | Metric | Callable] = ("perplexity", "acc"),
    target_delimiter: str = " ",
    process: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    version: Any = 1.0,
    override: bool = False,
    tags: Sequence[str] = (),
    alias: str | None = None,
) -> TaskConfig:
    """How likely the target is after the prompt, and whether greedy decoding gives it."""
    common = _common(data, fewshot, process, version, tags, alias, override)
    fields = {
        "doc_to_text": _text(prompt),
        "doc_to_target": _text(target),
        "target_delimiter": target_delimiter,
        "metric_list": metric_entries(metrics),
    }
    return _compile(name, "loglikelihood", common, fields)


def rolling(
    name: str,
    *,
    data: Data,
    text: Text,
    metrics: Iterable[str | Metric | Callable] = ("word_perplexity", "byte_perplexity", "bits_per_byte"),
    process: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    version: Any = 1.0,
    override: bool = False,
    tags: Sequence[str] = (),
    alias: str | None = None,
) -> TaskConfig:
    """Perplexity of whole documents, scored in windows of the model's context."""
    common = _common(data, None, process, version, tags, alias, override)
    fields = {"doc_to_target": _text(text), "metric_list": metric_entries(metrics)}
    return _compile(name, "loglikelihood_rolling", common, fields)


def generate(
    name: str,
    *,
    data: Data,
    prompt: Text,
    target: Any,
    until: Sequence[str] | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    sampling: Mapping[str, Any] | None = None,
    repeats: int = 1,
    fewshot: FewShot | None = None,
    filters: Mapping[str, Sequence[Any]] | None = None,
    metrics: Iterable[str | Metric | Callable] = ("exact_match",),
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    target_delimiter: str = " ",
    process: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    version: Any = 1.0,
    override: bool = False,
    tags: Sequence[str] = (),
    alias: str | None = None,
) -> TaskConfig:
    """The model writes an answer (greedy unless `temperature`/`sampling` say otherwise) up to
    a stop sequence in `until` (default: the few-shot delimiter) or `max_tokens` (default:
    the backend's, 256); `filters` extract the answer from the text and `metrics` score it
    against `target`. `repeats` answers per document (with sampling). `sampling` holds any
    other generation argument (`do_sample`, `top_p`, `seed`...)."""
    common = _common(data, fewshot, process, version, tags, alias, override)
    gen: dict[str, Any] = {}
    if until is not None:
        gen["until"] = list(until)
    if max_tokens is not None:
        gen["max_gen_toks"] = max_tokens
    if temperature is not None:
        gen["temperature"] = float(temperature)
        gen["do_sample"] = float(temperature) > 0
    gen.update(sampling or {})
    entries = metric_entries(metrics)
    for entry in entries:
        entry.update((metric_options or {}).get(entry["metric"], {}))
    fields = {
        "doc_to_text": _text(prompt),
        "doc_to_target": target,
        "target_delimiter": target_delimiter,
        "generation_kwargs": gen or None,
        "repeats": repeats,
        "filter_list": filter_entries(filters),
        "metric_list": entries,
    }
    return _compile(name, "generate_until", common, fields)


def group(
    name: str,
    tasks: Iterable[TaskConfig | GroupConfig | str],
    *,
    metrics: Iterable[str] = ("acc",),
    weight_by_size: bool = True,
    average: Mapping[str, str] | None = None,
    num_fewshot: Mapping[str, int] | None = None,
    alias: str | None = None,
    version: Any = 1.0,
    override: bool = False,
) -> GroupConfig:
    """Tasks reported together, with each of `metrics` averaged over them (by document count
    when `weight_by_size`, else each task counts once). `average` maps each member to the
    `metric,filter` score that stands for it in `average`, the unweighted mean of different
    metrics (the Open LLM Leaderboard's headline number); `num_fewshot` sets members' n-shot within the group."""
    shots = dict(num_fewshot or {})
    members: list[Any] = []
    for t in tasks:
        key = "group" if isinstance(t, GroupConfig) else "task"
        member = t.task if isinstance(t, TaskConfig) else t.group if isinstance(t, GroupConfig) else t
        members.append({key: member, "num_fewshot": shots.pop(member)} if member in shots else member)
    if shots:
        raise LmevalError(f"group {name!r}: num_fewshot names {sorted(shots)}, which are not among its members")
    aggregates: list[dict[str, Any]] = [{"metric": m, "weight_by_size": weight_by_size} for m in metrics]
    if average is not None:
        aggregates.append({"metric": "average", "of": dict(average), "weight_by_size": False})
    data = {
        "group": name,
        "task": members,
        "aggregate_metric_list": aggregates,
        "metadata": _metadata(version, override),
    }
    if alias:
        data["group_alias"] = alias
    return declared(group_config_from_dict(data, declaring_file(1)))
