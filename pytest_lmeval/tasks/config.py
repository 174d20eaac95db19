"""Task and group declarations, with lm-evaluation-harness's YAML field names."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import metrics as metric_fns
from ..errors import LmevalError
from ..filters import FilterPipeline, build_pipelines
from ..outputs import output_type
from .sources import Hub, Source

# lm-eval YAML keys for features pytest-lmeval does not have: named in a clear error.
_UNSUPPORTED_KEYS = {
    "class": "Python-defined tasks ('class:')",
    "custom_dataset": "custom_dataset loaders",
    "doc_to_image": "image inputs (doc_to_image)",
    "doc_to_audio": "audio inputs (doc_to_audio)",
    "use_prompt": "promptsource prompts (use_prompt)",
    "recipe": "unitxt recipes",
}
# Options of a metric_list entry that are not keyword arguments of the metric.
_METRIC_ENTRY_KEYS = {"metric", "aggregation", "higher_is_better", "hf_evaluate", "fn"}
# Keys lm-eval accepts that change nothing about scores; we keep them in the config record.
_INERT_KEYS = {
    "should_decontaminate",
    "doc_to_decontamination_query",
    "unsafe_code",
}


@dataclass
class TaskConfig:
    task: str
    source: Path
    dataset_path: str | None = None
    dataset_name: str | None = None
    dataset_kwargs: dict[str, Any] | None = None
    data: Source | None = None  # Python tasks: local files or inline rows (None: the hub data set)
    training_split: str | None = None
    validation_split: str | None = None
    test_split: str | None = None
    fewshot_split: str | None = None
    process_docs: Any = None
    doc_to_text: Any = None
    doc_to_choice: Any = None
    doc_to_target: Any = None
    gen_prefix: str | None = None
    description: str = ""
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    fewshot_config: dict[str, Any] = field(default_factory=dict)
    fewshot_excludes_doc: bool | None = None  # None: lm-eval's rule (few-shot split == test split)
    fewshot_seed: int | None = None  # None: the run's --seed
    num_fewshot: int | None = None
    metric_list: list[dict[str, Any]] = field(default_factory=list)
    output_type: str = "generate_until"
    task_alias: str | None = None
    tag: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    repeats: int = 1
    generation_kwargs: dict[str, Any] | None = None
    filter_list: list[dict[str, Any]] | None = None
    process_results: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    filters: tuple[FilterPipeline, ...] = ()  # built from filter_list by task_config_from_dict

    @property
    def source_data(self) -> Source:
        """Where the documents come from (YAML tasks: the hub data set, or the mirror's copy)."""
        if self.data is not None:
            return self.data
        return Hub(str(self.dataset_path), self.dataset_name, dict(self.dataset_kwargs or {}))

    @property
    def eval_split(self) -> str:
        split = self.test_split or self.validation_split
        if not split:
            raise LmevalError(f"{self.source}: task {self.task!r} has no test_split or validation_split")
        return split

    @property
    def fewshot_source_split(self) -> str | None:
        """The split few-shot examples come from, as lm-eval picks it."""
        return (
            self.fewshot_config.get("split")
            or self.fewshot_split
            or self.training_split
            or self.validation_split
            or self.test_split
        )

    @property
    def sampler(self) -> str:
        return self.fewshot_config.get("sampler", "default")

    @property
    def version(self) -> Any:
        return self.metadata.get("version", 0)

    @property
    def metrics(self) -> list[str]:
        names = [m["metric"] for m in self.metric_list] if self.metric_list else []
        return names or list(output_type(self.output_type).default_metrics)

    def _metric_entry(self, metric: str) -> dict[str, Any]:
        return next((m for m in self.metric_list if m.get("metric") == metric), {})

    def metric_options(self, metric: str) -> dict[str, Any]:
        """The keyword arguments of a metric_list entry (ignore_case, regexes_to_ignore...)."""
        return {k: v for k, v in self._metric_entry(metric).items() if k not in _METRIC_ENTRY_KEYS}

    def aggregation(self, metric: str) -> str:
        return str(self._metric_entry(metric).get("aggregation") or metric_fns.aggregation_for(metric))

    def metric_function(self, metric: str) -> Any:
        """A metric written as a Python function (None for the built-in ones)."""
        return self._metric_entry(metric).get("fn")

    def higher_is_better(self) -> dict[str, bool]:
        out = {}
        for name in self.metrics:
            default = metric_fns.METRICS.get(name, ("mean", True))[1]
            out[name] = bool(self._metric_entry(name).get("higher_is_better", default))
        return out

    @property
    def filter_names(self) -> list[str]:
        return [f.name for f in self.filters]

    def to_record(self) -> dict[str, Any]:
        """The config as results.json's `configs` section shows it (functions by name)."""
        out: dict[str, Any] = {"task": self.task}
        for f in fields(self):
            if f.name in ("task", "source", "extra"):
                continue
            value = getattr(self, f.name)
            if value in (None, [], {}, "", ()) or f.name == "filters":
                continue
            out[f.name] = _recorded(value)
        out.update({k: v for k, v in self.extra.items() if not callable(v)})
        return out


def _recorded(value: Any) -> Any:
    """A config value as results.json shows it: functions by name, sources described."""
    if isinstance(value, dict):
        return {k: _recorded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_recorded(v) for v in value]
    if hasattr(value, "describe") and not isinstance(value, type):
        return value.describe()
    code = getattr(value, "__code__", None)
    if code is not None:  # a function: where it is written
        return f"{Path(code.co_filename).name}:{code.co_firstlineno}:{value.__qualname__}"
    if callable(value):
        return repr(value)
    return value


_CONFIG_FIELDS = {f.name for f in fields(TaskConfig)} - {"source", "extra", "task", "filters"}


def task_config_from_dict(data: dict[str, Any], source: Path) -> TaskConfig:
    data = dict(data)
    name = data.pop("task")
    if not isinstance(name, str):
        raise LmevalError(f"{source}: 'task' must be one task name, got {name!r}")
    for key, feature in _UNSUPPORTED_KEYS.items():
        if data.get(key) is not None:
            raise LmevalError(f"{source}: task {name!r}: {feature} are not supported by pytest-lmeval (key {key!r})")
    if data.get("unsafe_code"):
        raise LmevalError(
            f"{source}: task {name!r} executes model-written code (unsafe_code: true); "
            "pytest-lmeval does not run such tasks"
        )
    tags = data.pop("tag", None) or []
    kwargs: dict[str, Any] = {"tag": [tags] if isinstance(tags, str) else list(tags)}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        if key in _CONFIG_FIELDS:
            kwargs[key] = value
        elif key in _INERT_KEYS:
            extra[key] = value
        else:
            raise LmevalError(f"{source}: task {name!r}: YAML key {key!r} is not supported by pytest-lmeval yet")
    for key in ("metric_list", "fewshot_config", "metadata"):
        if kwargs.get(key) is None:
            kwargs.pop(key, None)  # an explicit null means the default
    cfg = TaskConfig(task=name, source=source, extra=extra, **kwargs)
    where = f"{source}: task {name!r}"
    kind = output_type(cfg.output_type, where)
    if cfg.doc_to_text is None and kind.needs_prompt:
        raise LmevalError(f"{where}: doc_to_text is required")
    kind.check(cfg, where)
    if cfg.dataset_path is None and cfg.data is None:
        raise LmevalError(f"{where}: dataset_path is required")
    if not isinstance(cfg.repeats, int) or cfg.repeats < 1:
        raise LmevalError(f"{where}: repeats must be a whole number >= 1, got {cfg.repeats!r}")
    if cfg.process_results is not None and not callable(cfg.process_results):
        raise LmevalError(f"{where}: process_results must be a !function helper")
    _check_metrics(cfg)
    cfg.generation_kwargs = kind.generation_kwargs(cfg)
    cfg.filters = build_pipelines(cfg.filter_list, source, name)
    return cfg


def _check_metrics(cfg: TaskConfig) -> None:
    where = f"{cfg.source}: task {cfg.task!r}"
    kind = output_type(cfg.output_type)
    known = kind.builtin_metrics
    for entry in cfg.metric_list:
        if isinstance(entry, dict) and callable(entry.get("fn")):
            continue  # a Python metric: any output type
        if isinstance(entry, dict) and callable(entry.get("metric")):
            raise LmevalError(f"{where}: metric functions (metric: !function ...) are not supported by pytest-lmeval")
        if not isinstance(entry, dict) or not isinstance(entry.get("metric"), str):
            raise LmevalError(f"{where}: each metric_list entry needs a 'metric' name, got {entry!r}")
        metric = entry["metric"]
        if cfg.process_results is None and metric not in known:
            raise LmevalError(
                f"{where}: metric {metric!r} is not supported for {cfg.output_type} "
                f"(supported: {', '.join(known)}; other metrics need a process_results helper)"
            )
        if entry.get("hf_evaluate"):
            raise LmevalError(f"{where}: metric {metric!r}: hf_evaluate metrics are not supported by pytest-lmeval")
        aggregation = entry.get("aggregation")
        if aggregation is not None and aggregation not in metric_fns.AGGREGATIONS:
            raise LmevalError(
                f"{where}: metric {metric!r}: aggregation {aggregation!r} is not supported "
                f"(supported: {', '.join(metric_fns.AGGREGATIONS)})"
            )
        kind.check_metric(entry, where)


@dataclass(frozen=True)
class GroupMember:
    """One entry of a group's `task:` list: a task, group or tag name, with the config keys the
    group overrides for it (lm-eval's `- task: arc_challenge` / `num_fewshot: 25` form)."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    declared_as: str = "task"  # the key it was given under: "task" or "group"


@dataclass
class GroupConfig:
    """A named set of tasks (or tags, or other groups) reported with an aggregate.

    `overrides` are the task config keys set at the group level: lm-eval applies them to every
    task below the group (a member's own overrides win)."""

    group: str
    source: Path
    members: list[GroupMember]
    group_alias: str | None = None
    aggregate_metric_list: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> list[str]:
        return [m.name for m in self.members]

    @property
    def version(self) -> Any:
        return self.metadata.get("version", 0)


_GROUP_KEYS = {"group", "task", "group_alias", "aggregate_metric_list", "metadata", "tag"}
_AGG_KEYS = {"metric", "filter_list", "aggregation", "weight_by_size", "of"}


def group_config_from_dict(data: dict[str, Any], source: Path) -> GroupConfig:
    """A group declaration. A member given as a mapping either overrides keys of a known task
    or group, or (when the registry does not know its name) defines one inline; the registry
    decides which when it resolves the group."""
    name = data.get("group")
    if not isinstance(name, str):
        raise LmevalError(f"{source}: 'group' must be one group name, got {name!r}")
    raw = data.get("task")
    raw = [raw] if isinstance(raw, str) else raw
    if not isinstance(raw, list):
        raise LmevalError(f"{source}: group {name!r}: 'task' must be a list of task, tag or group names")
    members: list[GroupMember] = []
    for item in raw:
        if isinstance(item, str):
            members.append(GroupMember(item))
        elif isinstance(item, dict) and isinstance(item.get("task") or item.get("group"), str):
            key = "group" if "group" in item else "task"
            members.append(GroupMember(item[key], {k: v for k, v in item.items() if k != key}, key))
        else:
            raise LmevalError(f"{source}: group {name!r}: unsupported entry in 'task': {item!r}")
    aggs = data.get("aggregate_metric_list") or []
    aggs = [aggs] if isinstance(aggs, dict) else list(aggs)
    for agg in aggs:
        if not isinstance(agg, dict) or not isinstance(agg.get("metric"), str):
            raise LmevalError(f"{source}: group {name!r}: each aggregate_metric_list entry needs a 'metric'")
        unknown = set(agg) - _AGG_KEYS
        if unknown:
            raise LmevalError(f"{source}: group {name!r}: aggregate_metric_list keys {sorted(unknown)} unsupported")
        if agg.get("aggregation", "mean") != "mean":
            raise LmevalError(f"{source}: group {name!r}: only the 'mean' aggregation is supported, as in lm-eval")
    overrides = {k: v for k, v in data.items() if k not in _GROUP_KEYS}
    unknown = set(overrides) - _CONFIG_FIELDS - _INERT_KEYS
    if unknown:
        raise LmevalError(f"{source}: group {name!r}: unsupported keys {sorted(unknown)}")
    return GroupConfig(
        group=name,
        source=source,
        members=members,
        group_alias=data.get("group_alias"),
        aggregate_metric_list=aggs,
        metadata=dict(data.get("metadata") or {}),
        overrides=overrides,
    )
