"""Task and group declarations, with lm-evaluation-harness's YAML field names."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..core.errors import LmevalError
from ..scoring import metrics as metric_fns
from ..scoring.filters import FilterPipeline, build_pipelines
from .lmeval import catalogue_metrics
from .outputs import output_type
from .sources import Hub, Source

# lm-eval YAML keys for features pytest-lmeval does not have: named in a clear error.
_UNSUPPORTED_KEYS = {
    "doc_to_image": "image inputs (doc_to_image)",
    "doc_to_audio": "audio inputs (doc_to_audio)",
    "use_prompt": "promptsource prompts (use_prompt)",
    "recipe": "unitxt recipes",
}
# Options of a metric_list entry that are not keyword arguments of the metric.
_METRIC_ENTRY_KEYS = {"metric", "aggregation", "higher_is_better", "hf_evaluate", "fn", "lmeval_fn"}
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
    custom_dataset: Any = None  # lm-eval's `custom_dataset: !function` loader (tasks/class_tasks.py calls it)
    task_class: Any = None  # lm-eval's `class: !function` Task subclass, run by tasks/class_tasks.py
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
        """The aggregation's name (a `!function` helper as `!function mod.fn`)."""
        given = self._metric_entry(metric).get("aggregation")
        if given is not None:
            return str(given)
        if metric not in metric_fns.METRICS and self.metric_function(metric) is None:
            return catalogue_metrics.default_aggregation(metric) or metric_fns.aggregation_for(metric)
        return metric_fns.aggregation_for(metric)

    def catalogue_aggregation(self, metric: str) -> Any:
        """An aggregation only lm-eval has (its registered f1, bleu...; a `!function` helper),
        given as lm-eval's name or the helper; None for our own aggregations."""
        given = self._metric_entry(metric).get("aggregation")
        if callable(given):
            return given
        name = self.aggregation(metric)
        return None if name in metric_fns.AGGREGATIONS else name

    def is_catalogue_metric(self, metric: str) -> bool:
        """Whether lm-eval's function computes the metric (a name our output type does not
        compute, or a `metric: !function` helper)."""
        if callable(self._metric_entry(metric).get("lmeval_fn")):
            return True
        return metric not in output_type(self.output_type).builtin_metrics

    def catalogue_metric(self, metric: str) -> Any:
        """lm-eval's function for a metric the output type does not compute itself: a
        `metric: !function` helper, or its registry's (or HF evaluate's) metric."""
        entry = self._metric_entry(metric)
        if callable(entry.get("lmeval_fn")):
            return entry["lmeval_fn"]
        return catalogue_metrics.metric_function(metric, hf_evaluate=entry.get("hf_evaluate") is True)

    def metric_function(self, metric: str) -> Any:
        """A metric written as a Python function (None for the built-in ones)."""
        return self._metric_entry(metric).get("fn")

    def higher_is_better(self) -> dict[str, bool]:
        out = {}
        for name in self.metrics:
            default = metric_fns.METRICS.get(name, ("mean", True))[1]
            if name not in metric_fns.METRICS and self.metric_function(name) is None:
                found = catalogue_metrics.higher_is_better(name)
                default = default if found is None else found
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
    if data.get("class") is not None:
        from .lmeval.class_tasks import class_task_config

        return class_task_config(name, data, source)
    for key, feature in _UNSUPPORTED_KEYS.items():
        if data.get(key) is not None:
            raise LmevalError(f"{source}: task {name!r}: {feature} are not supported by pytest-lmeval (key {key!r})")
    if data.get("unsafe_code"):
        raise LmevalError(
            f"{source}: task {name!r} executes model-written code (unsafe_code: true); "
            "pytest-lmeval does not run such tasks"
        )
    if isinstance(data.get("metric_list"), list):
        data["metric_list"] = [_metric_entry_from_yaml(e) for e in data["metric_list"]]
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
    if cfg.custom_dataset is not None:
        from .lmeval.class_tasks import custom_dataset_source

        cfg.data = custom_dataset_source(cfg, where)
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
    cfg.filters = build_pipelines(_with_lmeval_filters(cfg.filter_list, data, where), source, name)
    return cfg


def _function_refs(value: Any) -> list[Any]:
    """The `!function` references anywhere in a task's YAML (their modules may register filters)."""
    if isinstance(value, dict):
        return [r for v in value.values() for r in _function_refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _function_refs(v)]
    return [value] if callable(value) and hasattr(value, "dotted") else []


def _with_lmeval_filters(filter_list: Any, data: dict[str, Any], where: str) -> Any:
    """Filter steps named after a filter only lm-eval registers (regex_pos, format_span, a task
    helper's @register_filter class) take lm-eval's class itself: it has our filters' interface."""
    from ..scoring.filters import FILTERS

    if not isinstance(filter_list, list):
        return filter_list
    out = []
    for entry in filter_list:
        steps = entry.get("filter") if isinstance(entry, dict) else None
        if not isinstance(steps, list):
            out.append(entry)
            continue
        new_steps = []
        for step in steps:
            function = step.get("function") if isinstance(step, dict) else None
            if isinstance(function, str) and function not in FILTERS:
                try:
                    found = catalogue_metrics.registered_filter(function, _function_refs(data))
                except LmevalError as exc:
                    raise LmevalError(f"{where}: {exc}") from None
                if found is not None:
                    step = {**step, "function": found}
            new_steps.append(step)
        out.append({**entry, "filter": new_steps})
    return out


def _metric_entry_from_yaml(entry: Any) -> Any:
    """lm-eval's `metric: !function mod.fn`: the metric is named after the function, which
    lm-eval calls as it calls its registered metrics (kept under `lmeval_fn`)."""
    if isinstance(entry, dict) and callable(entry.get("metric")) and not isinstance(entry["metric"], str):
        fn = entry["metric"]
        name = getattr(fn, "dotted", None)
        name = name.rsplit(".", 1)[-1] if name else getattr(fn, "__name__", repr(fn))
        return {**entry, "metric": name, "lmeval_fn": fn}
    return entry


# lm-eval computes these per output type; any other name gives no value there.
_CATALOGUE_METRICS = {"multiple_choice": set(catalogue_metrics.CHOICE_METRICS)}


def _check_catalogue_metric(cfg: TaskConfig, entry: dict[str, Any], where: str) -> None:
    """A metric our output type does not compute: lm-eval's, where lm-eval computes it."""
    metric = entry["metric"]
    if cfg.output_type == "generate_until":
        if callable(entry.get("lmeval_fn")):
            return
        if not catalogue_metrics.installed():
            raise LmevalError(f'{where}: metric {metric!r} is lm-eval\'s: pip install "pytest-lmeval[catalogue]"')
        if entry.get("hf_evaluate") is True or not catalogue_metrics.registered(metric):
            problem = catalogue_metrics.hf_evaluate_problem(metric)
            if problem:
                raise LmevalError(f"{where}: metric {metric!r} is an HF evaluate metric, which {problem}")
        return
    if metric in _CATALOGUE_METRICS.get(cfg.output_type, ()) and catalogue_metrics.installed():
        return
    known = output_type(cfg.output_type).builtin_metrics + tuple(sorted(_CATALOGUE_METRICS.get(cfg.output_type, ())))
    raise LmevalError(
        f"{where}: metric {metric!r} is not supported for {cfg.output_type} "
        f"(supported: {', '.join(known)}; other metrics need a process_results helper)"
    )


def _check_metrics(cfg: TaskConfig) -> None:
    where = f"{cfg.source}: task {cfg.task!r}"
    kind = output_type(cfg.output_type)
    known = kind.builtin_metrics
    for entry in cfg.metric_list:
        if isinstance(entry, dict) and callable(entry.get("fn")):
            continue  # a Python metric: any output type
        if not isinstance(entry, dict) or not isinstance(entry.get("metric"), str):
            raise LmevalError(f"{where}: each metric_list entry needs a 'metric' name, got {entry!r}")
        metric = entry["metric"]
        if cfg.process_results is None and (metric not in known or callable(entry.get("lmeval_fn"))):
            _check_catalogue_metric(cfg, entry, where)
        aggregation = entry.get("aggregation")
        known_aggs = {*metric_fns.AGGREGATIONS, *catalogue_metrics.registered_aggregations()}
        if aggregation is not None and not callable(aggregation) and aggregation not in known_aggs:
            raise LmevalError(
                f"{where}: metric {metric!r}: aggregation {aggregation!r} is not supported "
                f"(supported: {', '.join(sorted(known_aggs))}; or a !function helper)"
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
        elif isinstance(item, dict) and isinstance(item.get("group" if "group" in item else "task"), str):
            key = "group" if "group" in item else "task"  # an inline group lists its own `task:`
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
