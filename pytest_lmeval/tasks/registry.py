"""Every task, group and tag found in the benchmark folders, and `--tasks` resolution."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LmevalError, close_matches
from .config import GroupConfig, TaskConfig, group_config_from_dict, task_config_from_dict
from .yaml_loader import load_task_yaml


@dataclass
class Registry:
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    groups: dict[str, GroupConfig] = field(default_factory=dict)
    tags: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def scan(cls, folders: Iterable[Path]) -> Registry:
        reg = cls()
        for folder in folders:
            for path in sorted(folder.rglob("*.yaml")):
                reg._add_file(path)
        return reg

    def _add_file(self, path: Path) -> None:
        data = load_task_yaml(path)
        if "group" in data and "task" in data and isinstance(data["task"], list):
            group = group_config_from_dict(data, path)
            self._claim(group.group, path)
            self.groups[group.group] = group
        elif "task" in data:
            cfg = task_config_from_dict(data, path)
            self._claim(cfg.task, path)
            self.tasks[cfg.task] = cfg
            for tag in cfg.tag:
                self.tags.setdefault(tag, []).append(cfg.task)
        # YAML with neither key is an include-only fragment (e.g. _default_template_yaml).

    def _claim(self, name: str, path: Path) -> None:
        for known in (self.tasks.get(name), self.groups.get(name)):
            if known is not None:
                raise LmevalError(f"{path}: name {name!r} is already defined in {known.source}")

    @property
    def names(self) -> list[str]:
        return sorted({*self.tasks, *self.groups, *self.tags})

    def leaves(self, name: str, _stack: tuple[str, ...] = ()) -> list[str]:
        """The tasks under a task, group or tag name, in declaration order, without repeats."""
        if name in _stack:
            raise LmevalError(f"group cycle: {' -> '.join((*_stack, name))}")
        if name in self.tasks:
            return [name]
        if name in self.groups:
            members = self.groups[name].task
        elif name in self.tags:
            members = self.tags[name]
        else:
            raise LmevalError(f"unknown task {name!r}{close_matches(name, self.names)}")
        out: list[str] = []
        for member in members:
            for leaf in self.leaves(member, (*_stack, name)):
                if leaf not in out:
                    out.append(leaf)
        return out

    def children(self, group: str) -> list[str]:
        """A group's direct members, with tags expanded to their tasks."""
        out: list[str] = []
        for member in self.groups[group].task:
            out.extend(self.tags.get(member, [member]) if member not in self.groups else [member])
        return out

    def resolve(self, selection: str) -> list[str]:
        """Expand a comma-separated `--tasks` value (names, groups, tags, wildcards) into the
        names the user asked for, keeping groups as groups."""
        picked: list[str] = []
        for raw in selection.split(","):
            name = raw.strip()
            if not name:
                continue
            if any(ch in name for ch in "*?["):
                matches = [n for n in self.names if fnmatch.fnmatchcase(n, name)]
                if not matches:
                    raise LmevalError(f"--tasks {name!r} matches no task or group")
                # A tag that a pattern matches adds nothing: its tasks match or are named.
                matches = [m for m in matches if m not in self.tags or m in self.groups]
            else:
                self.leaves(name)  # raises a clear error for an unknown name
                matches = [name]
            picked.extend(m for m in matches if m not in picked)
        if not picked:
            raise LmevalError("--tasks is empty: name at least one task or group")
        return picked

    def describe(self) -> str:
        """The `--tasks list` listing."""
        lines = ["Groups:"]
        for name in sorted(self.groups):
            lines.append(f"  {name:<40} {len(self.leaves(name)):>4} tasks")
        lines.append("Tags:")
        for name in sorted(set(self.tags) - set(self.groups)):
            lines.append(f"  {name:<40} {len(self.tags[name]):>4} tasks")
        lines.append("Tasks:")
        for name in sorted(self.tasks):
            cfg = self.tasks[name]
            lines.append(f"  {name:<40} {cfg.output_type:<16} {cfg.dataset_path}")
        return "\n".join(lines)
