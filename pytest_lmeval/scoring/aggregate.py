"""Per-task and per-group results from the documents' records, as lm-eval aggregates them.

Every value is keyed `metric,filter` (`acc,none`, `exact_match,strict-match`), as in lm-eval's
results.json. A group aggregates over all the tasks beneath it (its leaves, at any depth, as
lm-eval 0.4.13's Group.aggregate does), once per filter: the filters named in its
`aggregate_metric_list` entry, else every filter its tasks report for that metric.

One extension, for leaderboard-style averages of different metrics: an entry with `of:`, a
mapping from member (task or group) to the `metric,filter` key that stands for it, averages
those values (unweighted unless `weight_by_size: true`) under the entry's metric name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import calibration, lmeval_metrics, metrics
from .filters import DEFAULT_FILTER

if TYPE_CHECKING:
    from ..tasks.registry import Registry
    from ..tasks.task import Task


def split_key(key: str) -> tuple[str, str]:
    metric, _, filter_name = key.partition(",")
    return metric, filter_name or DEFAULT_FILTER


@dataclass
class Entry:
    """One row block of the results: a task or a group."""

    name: str
    alias: str
    is_group: bool
    n: int
    values: dict[str, Any] = field(default_factory=dict)  # "metric,filter" -> value
    stderrs: dict[str, float | str] = field(default_factory=dict)  # same keys
    missing: list[str] = field(default_factory=list)  # groups: subtasks without results

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"alias": self.alias}
        for key, value in self.values.items():
            metric, filter_name = split_key(key)
            out[key] = value
            out[f"{metric}_stderr,{filter_name}"] = self.stderrs[key]
        if self.missing:
            out["partial"] = True
            out["missing_subtasks"] = self.missing
        return out


@dataclass
class Results:
    entries: dict[str, Entry]  # in display order
    group_subtasks: dict[str, list[str]]
    task_names: list[str]
    group_names: list[str]
    robust: dict[str, Any] = field(default_factory=dict)  # task -> its robustness under --perturb


def _task_entry(task: Task, docs: list[dict[str, Any]], alias: str) -> Entry:
    entry = Entry(task.name, alias, False, len(docs))
    keys: dict[str, None] = {}
    for d in docs:
        keys.update(dict.fromkeys(d["metrics"]))
    # lm-eval's order: filter by filter, each filter's metrics in the task's order.
    order = {f: i for i, f in enumerate(task.config.filter_names)}
    for key in sorted(keys, key=lambda k: order.get(split_key(k)[1], len(order))):
        metric = split_key(key)[0]
        values = [d["metrics"][key] for d in docs if key in d["metrics"]]
        custom = task.config.catalogue_aggregation(metric)
        if custom is not None:  # lm-eval's own (f1, bleu...) or a `!function` helper
            entry.values[key], entry.stderrs[key] = lmeval_metrics.aggregate_with_stderr(values, custom)
            continue
        aggregation = task.config.aggregation(metric)
        entry.values[key], entry.stderrs[key] = metrics.aggregate(metric, values, aggregation)
    _add_calibration(entry, docs)
    return entry


def derived_higher_is_better(keys: Iterable[str], base: dict[str, bool]) -> dict[str, bool]:
    """`base` (the task's own metrics) with the direction of the metrics derived here: the
    calibration aggregates, and `METRIC@PERTURBATION` (robustness), which points as METRIC does."""
    out = dict(base)
    for key in keys:
        metric = split_key(key)[0]
        if metric in calibration.HIGHER_IS_BETTER:
            out[metric] = calibration.HIGHER_IS_BETTER[metric]
        elif "@" in metric and metric not in out:
            out[metric] = base.get(metric.partition("@")[0], True)
    return out


def _add_calibration(entry: Entry, docs: list[dict[str, Any]]) -> None:
    """ECE and selective accuracy from the documents' confidences (multiple choice; a group
    pools its tasks' documents), without a standard error."""
    for key, value in calibration.aggregates(docs).items():
        entry.values[key], entry.stderrs[key] = value, metrics.NA


def combine(values: list[float], stderrs: list[Any], sizes: list[int], by_size: bool) -> tuple[float, float | str]:
    value = metrics.weighted_mean(values, sizes, by_size)
    if len(stderrs) != len(values) or any(s == metrics.NA for s in stderrs):
        return value, metrics.NA
    if by_size:
        return value, metrics.pooled_stderr(stderrs, sizes)
    return value, metrics.unweighted_stderr(stderrs)


def _group_entry(name: str, alias: str, registry: Registry, entries: dict[str, Entry], missing: list[str]) -> Entry:
    leaves = [entries[t] for t in registry.leaves(name) if t in entries and not entries[t].is_group]
    entry = Entry(name, alias, True, sum(leaf.n for leaf in leaves), missing=missing)
    for spec in registry.groups[name].aggregate_metric_list:
        metric = spec["metric"]
        by_size = bool(spec.get("weight_by_size", True))
        if "of" in spec:  # pytest-lmeval: one chosen score per member
            parts = [(entries[m], key) for m, key in spec["of"].items() if m in entries and key in entries[m].values]
            if parts:
                key = f"{metric},{DEFAULT_FILTER}"
                entry.values[key], entry.stderrs[key] = combine(
                    [e.values[k] for e, k in parts],
                    [e.stderrs[k] for e, k in parts],
                    [e.n for e, _ in parts],
                    bool(spec.get("weight_by_size", False)),
                )
            continue
        filters = spec.get("filter_list")
        if filters is None:
            found = {split_key(k)[1] for leaf in leaves for k in leaf.values if split_key(k)[0] == metric}
            filters = sorted(found)
        elif isinstance(filters, str):
            filters = [filters]
        for filter_name in filters:
            key = f"{metric},{filter_name}"
            have = [leaf for leaf in leaves if key in leaf.values]
            if not have:
                continue
            entry.values[key], entry.stderrs[key] = combine(
                [leaf.values[key] for leaf in have],
                [leaf.stderrs[key] for leaf in have],
                [leaf.n for leaf in have],
                by_size,
            )
    return entry


def aggregate(
    records: Iterable[dict[str, Any]],
    tasks: dict[str, Task],
    registry: Registry,
    picked: list[str] | None,
) -> Results:
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_task[rec["task"]].append(rec)
    scored = [t for t in tasks if by_task.get(t)]
    if picked is None:  # no --tasks: every group that holds a scored task, outermost first
        holders = [g for g in registry.groups if set(registry.leaves(g)) & set(scored)]
        inner = {c for g in holders for c in registry.children(g)}
        picked = [g for g in holders if g not in inner] + scored
    entries: dict[str, Entry] = {}
    group_subtasks: dict[str, list[str]] = {}

    def visit(name: str, depth: int) -> Entry | None:
        prefix = " " * depth + "- " if depth else ""
        if name in registry.tasks:
            if not by_task.get(name) or name in entries:
                return entries.get(name)
            cfg = tasks[name].config
            entries[name] = _task_entry(tasks[name], by_task[name], prefix + (cfg.task_alias or name))
            return entries[name]
        if name not in registry.groups:  # a tag: report its tasks, no aggregate of its own
            found = [visit(child, depth) for child in registry.tags.get(name, [])]
            return None if not any(found) else found[-1]
        if name in entries:
            return entries[name]
        slot = len(entries)
        children: list[Entry] = []
        missing: list[str] = []
        for child in registry.children(name):
            got = visit(child, depth + 1)
            if got is None:
                missing.extend(registry.leaves(child))
            else:
                children.append(got)
                missing.extend(children[-1].missing)
        if not children:
            return None
        group = registry.groups[name]
        entry = _group_entry(name, prefix + (group.group_alias or name), registry, entries, missing)
        _add_calibration(entry, [d for leaf in registry.leaves(name) for d in by_task.get(leaf, ())])
        items = list(entries.items())
        items.insert(slot, (name, entry))
        entries.clear()
        entries.update(items)
        group_subtasks[name] = [c.name for c in children]
        return entry

    for name in picked:
        visit(name, 0)
    return Results(
        entries=entries,
        group_subtasks=group_subtasks,
        task_names=[n for n, e in entries.items() if not e.is_group],
        group_names=[n for n, e in entries.items() if e.is_group],
    )


def interleave(entry: Entry, extra: dict[str, tuple[float, float | str]], names: list[str]) -> None:
    """Put each `METRIC@NAME` value right after METRIC's."""
    values, stderrs = dict(entry.values), dict(entry.stderrs)
    entry.values.clear()
    entry.stderrs.clear()
    for key, value in values.items():
        entry.values[key], entry.stderrs[key] = value, stderrs[key]
        metric, filter_name = split_key(key)
        for name in names:
            key2 = f"{metric}@{name},{filter_name}"
            if key2 in extra:
                entry.values[key2], entry.stderrs[key2] = extra[key2]
