"""Task and group declarations, with lm-evaluation-harness's YAML field names."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import LmevalError

OUTPUT_TYPES = ("multiple_choice", "loglikelihood", "loglikelihood_rolling", "generate_until")
SUPPORTED_OUTPUT_TYPES = ("multiple_choice", "loglikelihood")
METRICS_BY_OUTPUT_TYPE = {
    "multiple_choice": ("acc", "acc_norm"),
    "loglikelihood": ("acc", "perplexity"),
}
# Keys lm-eval accepts that change nothing about scores; we keep them in the config record.
_INERT_KEYS = {
    "should_decontaminate",
    "doc_to_decontamination_query",
    "dataset_kwargs",
    "unsafe_code",
}


@dataclass
class TaskConfig:
    task: str
    source: Path
    dataset_path: str | None = None
    dataset_name: str | None = None
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
    num_fewshot: int | None = None
    metric_list: list[dict[str, Any]] = field(default_factory=list)
    output_type: str = "generate_until"
    task_alias: str | None = None
    tag: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    repeats: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

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
        return names or list(METRICS_BY_OUTPUT_TYPE.get(self.output_type, ()))

    def higher_is_better(self) -> dict[str, bool]:
        out = {}
        for m in self.metric_list or [{"metric": name} for name in self.metrics]:
            out[m["metric"]] = bool(m.get("higher_is_better", m["metric"] != "perplexity"))
        return out

    def to_record(self) -> dict[str, Any]:
        """The config as results.json's `configs` section shows it (functions by name)."""
        out: dict[str, Any] = {"task": self.task}
        for f in fields(self):
            if f.name in ("task", "source", "extra"):
                continue
            value = getattr(self, f.name)
            if value in (None, [], {}, ""):
                continue
            out[f.name] = value if not callable(value) else repr(value)
        out.update({k: v for k, v in self.extra.items() if not callable(v)})
        return out


_CONFIG_FIELDS = {f.name for f in fields(TaskConfig)} - {"source", "extra", "task"}


def task_config_from_dict(data: dict[str, Any], source: Path) -> TaskConfig:
    data = dict(data)
    name = data.pop("task")
    if not isinstance(name, str):
        raise LmevalError(f"{source}: 'task' must be one task name, got {name!r}")
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
    cfg = TaskConfig(task=name, source=source, extra=extra, **kwargs)
    if cfg.output_type not in OUTPUT_TYPES:
        raise LmevalError(f"{source}: task {name!r}: unknown output_type {cfg.output_type!r}")
    if cfg.output_type not in SUPPORTED_OUTPUT_TYPES:
        raise LmevalError(
            f"{source}: task {name!r}: output_type {cfg.output_type!r} is not supported yet "
            f"(supported: {', '.join(SUPPORTED_OUTPUT_TYPES)})"
        )
    if cfg.doc_to_text is None and cfg.output_type != "loglikelihood_rolling":
        raise LmevalError(f"{source}: task {name!r}: doc_to_text is required")
    if cfg.output_type == "multiple_choice" and cfg.doc_to_choice is None:
        raise LmevalError(f"{source}: task {name!r}: multiple_choice needs doc_to_choice")
    if cfg.dataset_path is None:
        raise LmevalError(f"{source}: task {name!r}: dataset_path is required")
    known = METRICS_BY_OUTPUT_TYPE[cfg.output_type]
    for metric in cfg.metrics:
        if metric not in known:
            raise LmevalError(
                f"{source}: task {name!r}: metric {metric!r} is not supported for "
                f"{cfg.output_type} (supported: {', '.join(known)})"
            )
    return cfg


@dataclass
class GroupConfig:
    """A named set of tasks (or tags, or other groups) reported with an aggregate."""

    group: str
    source: Path
    task: list[str]
    group_alias: str | None = None
    aggregate_metric_list: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> Any:
        return self.metadata.get("version", 0)


def group_config_from_dict(data: dict[str, Any], source: Path) -> GroupConfig:
    name = data.get("group")
    members = data.get("task")
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise LmevalError(
            f"{source}: group {name!r}: 'task' must be a list of task, tag or group names "
            "(inline task definitions inside a group are not supported yet)"
        )
    unknown = set(data) - {"group", "task", "group_alias", "aggregate_metric_list", "metadata"}
    if unknown:
        raise LmevalError(f"{source}: group {name!r}: unsupported keys {sorted(unknown)}")
    return GroupConfig(
        group=name,
        source=source,
        task=list(members),
        group_alias=data.get("group_alias"),
        aggregate_metric_list=list(data.get("aggregate_metric_list") or []),
        metadata=dict(data.get("metadata") or {}),
    )
