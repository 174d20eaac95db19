"""The task and group configs: what a YAML file and a Python declaration both compile to, with
lm-evaluation-harness's YAML field names.

Only the records and the questions asked of them live here; reading them from a dict, with
every check, is config_parsing.py's, so that lm-eval's side (tasks/lmeval/) can build configs
of its own without the records depending on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..core.errors import LmevalError
from ..scoring import lmeval_metrics
from ..scoring import metrics as metric_fns
from ..scoring.filters import FilterPipeline
from .outputs import output_type
from .sources import Hub, Source

# Options of a metric_list entry that are not keyword arguments of the metric.
_METRIC_ENTRY_KEYS = {"metric", "aggregation", "higher_is_better", "hf_evaluate", "fn", "lmeval_fn"}


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
    custom_dataset: Any = None  # lm-eval's `custom_dataset: !function` loader (tasks/lmeval/yaml_config.py)
    task_class: Any = None  # lm-eval's `class: !function` Task subclass, run by tasks/lmeval/class_tasks.py
    extra: dict[str, Any] = field(default_factory=dict)
    filters: tuple[FilterPipeline, ...] = ()  # built from filter_list by config_parsing.task_config_from_dict

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
            return lmeval_metrics.default_aggregation(metric) or metric_fns.aggregation_for(metric)
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
        return lmeval_metrics.metric_function(metric, hf_evaluate=entry.get("hf_evaluate") is True)

    def metric_function(self, metric: str) -> Any:
        """A metric written as a Python function (None for the built-in ones)."""
        return self._metric_entry(metric).get("fn")

    def higher_is_better(self) -> dict[str, bool]:
        out = {}
        for name in self.metrics:
            default = metric_fns.METRICS.get(name, ("mean", True))[1]
            if name not in metric_fns.METRICS and self.metric_function(name) is None:
                found = lmeval_metrics.higher_is_better(name)
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
