"""Task and group configs from dicts (a YAML file's, or a Python declaration's), checked as they
are read, so that a mistake is one line naming the file and the task before any model loads.

The keys only lm-eval's YAML has and that hand part of a task to Python (`class:`,
`custom_dataset:`) are tasks/lmeval/yaml_config.py's: it reads them and hands the rest here.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from ..core.errors import LmevalError
from ..scoring import lmeval_metrics
from ..scoring import metrics as metric_fns
from ..scoring.filters import FILTERS, build_pipelines
from .config import GroupConfig, GroupMember, TaskConfig
from .outputs import output_type

# lm-eval YAML keys for features pytest-lmeval does not have: named in a clear error.
_UNSUPPORTED_KEYS = {
    "doc_to_image": "image inputs (doc_to_image)",
    "doc_to_audio": "audio inputs (doc_to_audio)",
    "use_prompt": "promptsource prompts (use_prompt)",
    "recipe": "unitxt recipes",
}
# Keys lm-eval accepts that change nothing about scores; we keep them in the config record.
_INERT_KEYS = {
    "should_decontaminate",
    "doc_to_decontamination_query",
    "unsafe_code",
}


_CONFIG_FIELDS = {f.name for f in fields(TaskConfig)} - {"source", "extra", "task", "filters"}


def task_config_from_dict(data: dict[str, Any], source: Path) -> TaskConfig:
    """A task config, checked. A YAML task goes through tasks/lmeval/yaml_config.py first, which
    turns a `custom_dataset:` loader into the `data` source and builds `class:` tasks itself."""
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
    cfg.filters = build_pipelines(with_lmeval_filters(cfg.filter_list, data, where), source, name)
    return cfg


def _function_refs(value: Any) -> list[Any]:
    """The `!function` references anywhere in a task's YAML (their modules may register filters)."""
    if isinstance(value, dict):
        return [r for v in value.values() for r in _function_refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _function_refs(v)]
    return [value] if callable(value) and hasattr(value, "dotted") else []


def with_lmeval_filters(filter_list: Any, data: dict[str, Any], where: str) -> Any:
    """Filter steps named after a filter only lm-eval registers (regex_pos, format_span, a task
    helper's @register_filter class) take lm-eval's class itself: it has our filters' interface."""
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
                    found = lmeval_metrics.registered_filter(function, _function_refs(data))
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
_CATALOGUE_METRICS = {"multiple_choice": set(lmeval_metrics.CHOICE_METRICS)}


def _check_catalogue_metric(cfg: TaskConfig, entry: dict[str, Any], where: str) -> None:
    """A metric our output type does not compute: lm-eval's, where lm-eval computes it."""
    metric = entry["metric"]
    if cfg.output_type == "generate_until":
        if callable(entry.get("lmeval_fn")):
            return
        if not lmeval_metrics.installed():
            raise LmevalError(f'{where}: metric {metric!r} is lm-eval\'s: pip install "pytest-lmeval[catalogue]"')
        if entry.get("hf_evaluate") is True or not lmeval_metrics.registered(metric):
            problem = lmeval_metrics.hf_evaluate_problem(metric)
            if problem:
                raise LmevalError(f"{where}: metric {metric!r} is an HF evaluate metric, which {problem}")
        return
    if metric in _CATALOGUE_METRICS.get(cfg.output_type, ()) and lmeval_metrics.installed():
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
        known_aggs = {*metric_fns.AGGREGATIONS, *lmeval_metrics.registered_aggregations()}
        if aggregation is not None and not callable(aggregation) and aggregation not in known_aggs:
            raise LmevalError(
                f"{where}: metric {metric!r}: aggregation {aggregation!r} is not supported "
                f"(supported: {', '.join(sorted(known_aggs))}; or a !function helper)"
            )
        kind.check_metric(entry, where)


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
