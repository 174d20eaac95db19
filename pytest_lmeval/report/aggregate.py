"""Per-task and per-group results from the documents' records, as lm-eval aggregates them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import metrics
from ..tasks import Registry, Task

FILTER = "none"


@dataclass
class Entry:
    """One row block of the results: a task or a group."""

    name: str
    alias: str
    is_group: bool
    n: int
    values: dict[str, float] = field(default_factory=dict)
    stderrs: dict[str, float | str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # groups: subtasks without results

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"alias": self.alias}
        for metric, value in self.values.items():
            out[f"{metric},{FILTER}"] = value
            out[f"{metric}_stderr,{FILTER}"] = self.stderrs[metric]
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


def _task_entry(task: Task, docs: list[dict[str, Any]], alias: str) -> Entry:
    entry = Entry(task.name, alias, False, len(docs))
    for metric in task.config.metrics:
        values = [d["metrics"][metric] for d in docs if metric in d["metrics"]]
        if values:
            entry.values[metric], entry.stderrs[metric] = metrics.aggregate(metric, values)
    return entry


def _group_entry(name: str, alias: str, registry: Registry, children: list[Entry], missing: list[str]) -> Entry:
    entry = Entry(name, alias, True, sum(c.n for c in children), missing=missing)
    for spec in registry.groups[name].aggregate_metric_list:
        metric = spec["metric"]
        if spec.get("aggregation", "mean") != "mean":
            raise ValueError(f"group {name}: only mean aggregation is supported")
        have = [c for c in children if metric in c.values]
        if not have:
            continue
        sizes = [c.n for c in have]
        by_size = bool(spec.get("weight_by_size", True))
        entry.values[metric] = metrics.weighted_mean([c.values[metric] for c in have], sizes, by_size)
        stderrs = [c.stderrs[metric] for c in have]
        if any(s == metrics.NA for s in stderrs):
            entry.stderrs[metric] = metrics.NA
        elif by_size:
            entry.stderrs[metric] = metrics.pooled_stderr(stderrs, sizes)  # type: ignore[arg-type]
        else:
            entry.stderrs[metric] = metrics.unweighted_stderr(stderrs)  # type: ignore[arg-type]
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
            cfg = registry.tasks[name]
            entries[name] = _task_entry(tasks[name], by_task[name], prefix + (cfg.task_alias or name))
            return entries[name]
        if name not in registry.groups:  # a tag: report its tasks, no aggregate of its own
            found = [visit(child, depth) for child in registry.tags.get(name, [])]
            return None if not any(found) else found[-1]
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
        entry = _group_entry(name, prefix + (group.group_alias or name), registry, children, missing)
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
