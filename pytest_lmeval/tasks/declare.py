"""Declaring tasks in Python: the functions `pytest_lmeval` exports to benchmark files.

Each declaration compiles to the same `TaskConfig` or `GroupConfig` a YAML file gives (through
the same validation), so the engine, cache, reports and gates never know which they run.
Text fields take a format string over the document's fields (`"Question: {question}"`) or a
function of the document; choice and target fields take a field name or a function.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import LmevalError
from ..scoring.filters import Filter
from .config import GroupConfig, TaskConfig, group_config_from_dict, task_config_from_dict
from .sources import Files, Hub, Rows, Source

Doc = Mapping[str, Any]
Text = str | Callable[[Doc], Any]

# While the registry imports a benchmark file (python_files.py), what it declares lands here.
_recording: list[Any] | None = None


def declared(obj: Any) -> Any:
    """Note a declaration (a task, a group, or a benchmark's references) for the registry."""
    if _recording is not None:
        _recording.append(obj)
    return obj


@dataclass(frozen=True)
class Data:
    """A task's documents: where they come from and which split is evaluated."""

    source: Source
    split: str = "test"


def hub(path: str, name: str | None = None, *, split: str, **dataset_kwargs: Any) -> Data:
    """A Hugging Face hub data set (also served offline by `--data-dir`'s mirror)."""
    return Data(Hub(path, name, dataset_kwargs), split)


def _declaring_file(depth: int) -> Path:
    """The benchmark file `depth` frames up: the task's source, where relative paths start."""
    file = sys._getframe(depth + 1).f_globals.get("__file__")
    return Path(file).resolve() if file else Path.cwd() / "<python>"


def local(test: str | Path | None = None, *, split: str = "test", **splits: str | Path) -> Data:
    """Local jsonl, csv or parquet files, one per split, relative to the benchmark file:
    `local("questions.jsonl")`, or `local(test="q.jsonl", train="examples.jsonl")`."""
    here = _declaring_file(1).parent
    named = {**({"test": test} if test is not None else {}), **splits}
    if not named:
        raise LmevalError("local(): name at least one file")
    paths = {k: (Path(v) if Path(v).is_absolute() else here / v) for k, v in named.items()}
    return Data(Files(paths), split)


def rows(test: Sequence[Doc], *, split: str = "test", **splits: Sequence[Doc]) -> Data:
    """Documents written in the benchmark file: `rows(DOCS)`, or `rows(DOCS, train=EXAMPLES)`."""
    return Data(Rows({"test": list(test), **{k: list(v) for k, v in splits.items()}}), split)


@dataclass(frozen=True)
class FewShot:
    """How few-shot examples are chosen and joined. `exclude_doc` leaves the evaluated document
    out of its own examples the way lm-eval does when a task has no test split: the random
    sampler draws one example more and drops the document if it drew it."""

    n: int | None = None
    split: str | None = None
    sampler: str = "random"  # or "first_n"
    seed: int | None = None
    samples: Sequence[Doc] | None = None  # fixed examples instead of a split
    prompt: Text | None = None  # the examples' own prompt and target, where they differ
    target: Any = None
    delimiter: str = "\n\n"
    description: Text | None = None
    exclude_doc: bool = False


def fewshot(
    n: int | None = None,
    *,
    split: str | None = None,
    sampler: str = "random",
    seed: int | None = None,
    samples: Sequence[Doc] | None = None,
    prompt: Text | None = None,
    target: Any = None,
    delimiter: str = "\n\n",
    description: Text | None = None,
    exclude_doc: bool = False,
) -> FewShot:
    """Few-shot examples: `n` of them (None: as many as `--num-fewshot` asks), from `split` or
    the fixed `samples`, picked by `sampler` ("random", seeded by `seed` or `--seed`, or
    "first_n"), joined by `delimiter`, after `description`."""
    if sampler not in ("random", "first_n"):
        raise LmevalError(f"fewshot(): sampler must be 'random' or 'first_n', got {sampler!r}")
    return FewShot(n, split, sampler, seed, samples, prompt, target, delimiter, description, exclude_doc)


# -- metrics and filters ----------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """A metric written as a function of the document and the model's answer. The answer is
    what the output type produces: the choices' log-likelihoods for multiple choice, the
    filtered text for generation, `(loglikelihood, is_greedy)` for loglikelihood, the
    document's log-likelihood for rolling tasks. `aggregation` is a built-in aggregation name
    ("mean", "perplexity", "weighted_perplexity", "bits_per_byte", ...)."""

    fn: Callable[[Doc, Any], Any]
    name: str
    higher_is_better: bool = True
    aggregation: str = "mean"

    def __call__(self, doc: Doc, answer: Any) -> Any:
        """Scores as its function does, so a YAML task's `fn: !function helpers.NAME` may name
        a Metric (a judged one: `NAME = lm.judge(...)`)."""
        return self.fn(doc, answer)


def metric(
    fn: Callable[[Doc, Any], Any] | None = None,
    *,
    name: str | None = None,
    higher_is_better: bool = True,
    aggregation: str = "mean",
):
    """Use as `@metric` or `metric(fn, name=..., higher_is_better=False)`."""

    def wrap(f: Callable[[Doc, Any], Any]) -> Metric:
        return Metric(f, name or f.__name__, higher_is_better, aggregation)

    return wrap(fn) if fn is not None else wrap


def judge(
    name: str = "judge",
    *,
    question: str | Callable[[Doc], Any] = "question",
    reference: str | Callable[[Doc], Any] | None = "answer",
    template: str | None = None,
    verdicts: Mapping[str, float] | None = None,
    scale: float | None = None,
    strategy: str = "llm",
    rule: Callable[[Doc, Any], Any] | None = None,
    retries: int = 1,
    max_tokens: int = 16,
) -> Metric:
    """A metric scored by the run's judge model (`--judge-model`): it is shown the `question`
    and `reference` fields (names or functions of the document) and the model's answer, in
    `template` (a format string over {question}, {reference}, {answer}, {scale}; the default
    asks for CORRECT or INCORRECT), and its reply is read as one of `verdicts` (word -> score,
    default CORRECT 1, INCORRECT 0) or, with `scale=N`, a rating [[x]] scored x / N. A reply
    without one is asked again `retries` times, then the document is unscored with the reason.
    `strategy` is what `--judge-strategy auto` means here: "llm" (always judge), "rule" (only
    `rule(doc, answer)`, by default the answer equals the reference), "llm_recall" (judge only
    where the rule says wrong). See pytest_lmeval/judging.py."""
    from ..features.judging import STRATEGIES, Judge

    if strategy not in STRATEGIES or strategy == "auto":
        raise LmevalError(f"judge(): strategy must be 'llm', 'rule' or 'llm_recall', got {strategy!r}")
    if retries < 0 or max_tokens < 1:
        raise LmevalError("judge(): retries must be 0 or more and max_tokens at least 1")
    if scale is not None and scale <= 0:
        raise LmevalError(f"judge(): scale must be positive, got {scale!r}")
    words = tuple((str(k), float(v)) for k, v in verdicts.items()) if verdicts is not None else None
    if words is not None and not words:
        raise LmevalError("judge(): verdicts must name at least one word")
    fn = Judge(name, question, reference, template, *((words,) if words else ()), scale=scale, strategy=strategy,
               rule=rule, retries=retries, max_tokens=max_tokens)  # fmt: skip
    return Metric(fn, name, True, "mean")


def regex(pattern: str, *, group_select: int = 0, fallback: str = "[invalid]") -> dict[str, Any]:
    """Answer extraction: the `group_select`-th match of `pattern` (lm-eval's regex filter)."""
    return {"function": "regex", "regex_pattern": pattern, "group_select": group_select, "fallback": fallback}


def _text_filter(fn: Callable[[str], str]) -> type[Filter]:
    class _Step(Filter):
        def apply(self, resps, docs):
            return [[fn(r) for r in answers] for answers in resps]

    _Step.__name__ = _Step.__qualname__ = getattr(fn, "__name__", "filter")
    return _Step


def _filter_list(filters: Mapping[str, Sequence[Any]] | None) -> list[dict[str, Any]] | None:
    """Named pipelines of steps: a built-in name ("take_first", "lowercase"...), a `regex(...)`,
    or a function from answer text to text."""
    if filters is None:
        return None
    out = []
    for name, steps in filters.items():
        built = []
        for step in steps:
            if isinstance(step, str):
                built.append({"function": step})
            elif isinstance(step, dict):
                built.append(dict(step))
            elif callable(step):
                built.append({"function": _text_filter(step)})
            else:
                raise LmevalError(f"filter {name!r}: a step is a name, regex(...) or a function, got {step!r}")
        out.append({"name": name, "filter": built})
    return out


def _metric_list(metrics: Iterable[str | Metric | Callable]) -> list[dict[str, Any]]:
    out = []
    for m in metrics:
        if isinstance(m, str):
            out.append({"metric": m})
        elif isinstance(m, Metric):
            out.append(
                {"metric": m.name, "fn": m.fn, "aggregation": m.aggregation, "higher_is_better": m.higher_is_better}
            )
        elif callable(m):
            out.append({"metric": m.__name__, "fn": m, "aggregation": "mean", "higher_is_better": True})
        else:
            raise LmevalError(f"metrics: each is a built-in name or a function, got {m!r}")
    return out


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
        "metadata": {"version": common.version},
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


def _common(data: Data, fewshot: FewShot | None, process, version, tags, alias) -> _Common:
    if not isinstance(data, Data):
        raise LmevalError(f"data must be hub(...), local(...) or rows(...), got {data!r}")
    return _Common(data, fewshot, process, version, tuple(tags), alias, _declaring_file(2))


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
    tags: Sequence[str] = (),
    alias: str | None = None,
) -> TaskConfig:
    """One question, several answers: the model's choice is the answer it finds most likely
    after the prompt. `target` gives the right answer's index or text."""
    common = _common(data, fewshot, process, version, tags, alias)
    fields = {
        "doc_to_text": _text(prompt),
        "doc_to_choice": list(choices) if isinstance(choices, (list, tuple)) else choices,
        "doc_to_target": target,
        "target_delimiter": target_delimiter,
        "metric_list": _metric_list(metrics),
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
    tags: Sequence[str] = (),
    alias: str | None = None,
) -> TaskConfig:
    """The reverse of multiple choice (Winogrande): several contexts, one continuation; the
    model's choice is the context after which the continuation is most likely. `target` is
    the right context's index."""
    common = _common(data, fewshot, process, version, tags, alias)
    gold = target if callable(target) else (lambda doc, key=target: doc[key])
    fields = {
        "doc_to_text": lambda doc: int(gold(doc)),
        "doc_to_choice": contexts,
        "doc_to_target": _text(continuation),
        "target_delimiter": target_delimiter,
        "metric_list": _metric_list(metrics),
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
    tags: Sequence[str] = (),
    alias: str | None = None,
) -> TaskConfig:
    """How likely the target is after the prompt, and whether greedy decoding gives it."""
    common = _common(data, fewshot, process, version, tags, alias)
    fields = {
        "doc_to_text": _text(prompt),
        "doc_to_target": _text(target),
        "target_delimiter": target_delimiter,
        "metric_list": _metric_list(metrics),
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
    tags: Sequence[str] = (),
    alias: str | None = None,
) -> TaskConfig:
    """Perplexity of whole documents, scored in windows of the model's context."""
    common = _common(data, None, process, version, tags, alias)
    fields = {"doc_to_target": _text(text), "metric_list": _metric_list(metrics)}
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
    tags: Sequence[str] = (),
    alias: str | None = None,
) -> TaskConfig:
    """The model writes an answer (greedy unless `temperature`/`sampling` say otherwise) up to
    a stop sequence in `until` (default: the few-shot delimiter) or `max_tokens` (default:
    the backend's, 256); `filters` extract the answer from the text and `metrics` score it
    against `target`. `repeats` answers per document (with sampling). `sampling` holds any
    other generation argument (`do_sample`, `top_p`, `seed`...)."""
    common = _common(data, fewshot, process, version, tags, alias)
    gen: dict[str, Any] = {}
    if until is not None:
        gen["until"] = list(until)
    if max_tokens is not None:
        gen["max_gen_toks"] = max_tokens
    if temperature is not None:
        gen["temperature"] = float(temperature)
        gen["do_sample"] = float(temperature) > 0
    gen.update(sampling or {})
    entries = _metric_list(metrics)
    for entry in entries:
        entry.update((metric_options or {}).get(entry["metric"], {}))
    fields = {
        "doc_to_text": _text(prompt),
        "doc_to_target": target,
        "target_delimiter": target_delimiter,
        "generation_kwargs": gen or None,
        "repeats": repeats,
        "filter_list": _filter_list(filters),
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
        "metadata": {"version": version},
    }
    if alias:
        data["group_alias"] = alias
    return declared(group_config_from_dict(data, _declaring_file(1)))
