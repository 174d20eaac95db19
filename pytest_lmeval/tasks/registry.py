"""Every task, group and tag found in the benchmark folders, and `--tasks` resolution.

Names the folders do not define are looked up in lm-eval's own catalogue when the lm-eval
package is installed (tasks/lmeval/catalogue.py), one name at a time, so its 14,000 files are never
all parsed. A group may override task config keys for its members (lm-eval's
`- task: arc_challenge` / `num_fewshot: 25` entries, and keys set at the group level): the
overridden task keeps its name, as in lm-eval, and `configs_for` gives each selected task's
effective config.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..core.errors import LmevalError, close_matches
from .config import GroupConfig, TaskConfig
from .config_parsing import group_config_from_dict
from .lmeval.catalogue import Catalogue, lm_eval_tasks_dir
from .lmeval.yaml_config import task_config_from_yaml
from .lmeval.yaml_loader import load_task_yaml
from .python_files import is_benchmark_file, read_benchmark_file

_RENAME = (
    "rename yours, or mark it as the replacement: override=True in its declaration (YAML: metadata: {override: true})"
)


def overrides(decl: TaskConfig | GroupConfig) -> bool:
    """Whether a declaration says it replaces a library (or catalogue) task of its name."""
    return (decl.metadata or {}).get("override") is True


@dataclass
class Registry:
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    groups: dict[str, GroupConfig] = field(default_factory=dict)
    tags: dict[str, list[str]] = field(default_factory=dict)
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> its YAML, merged
    roots: dict[str, Path] = field(default_factory=dict)  # task or group -> folder it came from
    owners: dict[str, Path] = field(default_factory=dict)  # name -> the test file that runs it
    catalogue: Catalogue | None = None
    library: Path | None = None  # the benchmark library's folder (resolved): its names are taken
    _looked_up: set[str] = field(default_factory=set)
    _checked: set[str] = field(default_factory=set)  # names checked against the catalogue's

    @classmethod
    def scan(cls, folders: Iterable[Path], *, lm_eval_catalogue: bool = False, library: Path | None = None) -> Registry:
        """Every YAML under the folders; with `lm_eval_catalogue`, lm-eval's own tasks too
        (found lazily, by name, when the package is installed). A name defined twice in one
        folder is an error; a later folder (an --include-path) overrides an earlier one's
        definition, as lm-eval's include_path overrides its own tasks, except a name of the
        `library` folder (the benchmark library): replacing one of those takes a declaration
        that says so (`override=True`; YAML `metadata: {override: true}`), else it is one line
        naming both files."""
        reg = cls(library=library.resolve() if library is not None else None)
        for folder in folders:
            for path in sorted(folder.rglob("*.yaml")):
                reg._add_file(path, folder)
            reg.scan_python(folder)
        if lm_eval_catalogue and (root := lm_eval_tasks_dir()) is not None:
            reg.catalogue = Catalogue(root)
        return reg

    def _add_file(self, path: Path, root: Path) -> None:
        data = load_task_yaml(path)
        if "group" in data and "task" in data:
            group = group_config_from_dict(data, path)
            self._claim(group.group, path, root, overrides(group))
            self.groups[group.group] = group
            self.roots[group.group] = root
        elif "task" in data:
            self._add_task(data, path, root)
        # YAML with neither key is an include-only fragment (e.g. _default_template_yaml).

    def scan_python(self, folder: Path, *, tests_only: bool = False) -> None:
        """The tasks and groups the Python files under `folder` declare (with `tests_only`, only
        test files with a @benchmark: a folder of other tests is not imported)."""
        files = [folder] if folder.is_file() else sorted(folder.rglob("test_*.py" if tests_only else "*.py"))
        for path in files:
            if not is_benchmark_file(path, tests_only=tests_only):
                continue
            found = read_benchmark_file(path)
            root = folder if folder.is_dir() else folder.parent
            for cfg in found.tasks:
                self.add_declared(cfg, root)
            for group in found.groups:
                self.add_declared(group, root)
            for name in found.runs:
                self.owners.setdefault(name, path.resolve())

    def add_declared(self, decl: TaskConfig | GroupConfig, root: Path) -> None:
        """A Python declaration (found by a scan, or by collecting a benchmark file)."""
        name = decl.task if isinstance(decl, TaskConfig) else decl.group
        known = self.tasks.get(name) or self.groups.get(name)
        if known is not None and known.source == decl.source:
            return  # the same file read again (pytest's import after the registry's)
        mine = known is not None and overrides(known) and not self._in_library(self.roots.get(name, root))
        if mine and self._in_library(root):
            return  # the library's file, collected after all: the user's replacement stays
        self._claim(name, decl.source, root, overrides(decl))
        self.roots[name] = root
        if isinstance(decl, GroupConfig):
            self.groups[name] = decl
            return
        self.tasks[name] = decl
        self.raw[name] = {}
        for tag in decl.tag:
            self.tags.setdefault(tag, []).append(name)

    def owner(self, name: str) -> Path | None:
        """The test file whose @benchmark runs the task (directly or through a group or tag)."""
        if name in self.owners:
            return self.owners[name]
        for group, path in self.owners.items():
            if (group in self.groups or group in self.tags) and name in self.leaves(group):
                return path
        return None

    def _add_task(self, data: dict[str, Any], path: Path, root: Path) -> TaskConfig:
        cfg = task_config_from_yaml(data, path)
        self._claim(cfg.task, path, root, overrides(cfg))
        self.tasks[cfg.task] = cfg
        self.raw[cfg.task] = data
        self.roots[cfg.task] = root
        for tag in cfg.tag:
            self.tags.setdefault(tag, []).append(cfg.task)
        return cfg

    def _claim(self, name: str, path: Path, root: Path, replaces: bool = False) -> None:
        for known in (self.tasks.get(name), self.groups.get(name)):
            if known is None:
                continue
            if self.roots.get(name) == root:
                raise LmevalError(f"{path}: name {name!r} is already defined in {known.source}")
            known_root = self.roots.get(name)
            if known_root is not None and self._in_library(known_root) and not self._in_library(root) and not replaces:
                kind = "task" if isinstance(known, TaskConfig) else "group"
                raise LmevalError(f"{path}: {kind} {name!r} is already a library {kind} ({known.source}): {_RENAME}")
            self._forget(name)  # a later folder overrides

    def _in_library(self, root: Path) -> bool:
        if self.library is None:
            return False
        resolved = root.resolve()
        return resolved == self.library or self.library in resolved.parents

    def check_not_shadowing(self, name: str) -> None:
        """One line when a task or group of the user's takes the name of one of lm-eval's
        catalogue (which the registry would otherwise never look up again), unless the
        declaration says it overrides it. Checked for the names a run selects: the
        catalogue's word index is read only then."""
        if self.catalogue is None or name in self._checked or "::" in name:
            return
        self._checked.add(name)
        decl = self.tasks.get(name) or self.groups.get(name)
        root = self.roots.get(name)
        if decl is None or root is None or root == self.catalogue.root or self._in_library(root) or overrides(decl):
            return
        declares = re.compile(rf"^(task|group)[ \t]*:[ \t]*[\"']?{re.escape(name)}[\"']?[ \t]*(#.*)?$", re.M)
        for path in self.catalogue.candidates(name):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            found = declares.search(text)
            if found:
                kind = "task" if isinstance(decl, TaskConfig) else "group"
                raise LmevalError(
                    f"{decl.source}: {kind} {name!r} is already a {found.group(1)} of lm-eval's catalogue ({path}): "
                    f"{_RENAME}"
                )

    def _forget(self, name: str) -> None:
        self.tasks.pop(name, None)
        self.groups.pop(name, None)
        self.raw.pop(name, None)
        self.roots.pop(name, None)
        for members in self.tags.values():
            if name in members:
                members.remove(name)

    # -- lm-eval's catalogue ------------------------------------------------------------------
    def _known(self, name: str) -> bool:
        if name in self.tasks or name in self.groups:
            return True
        if self.catalogue is None or name in self._looked_up:
            return name in self.tags
        # A tag seen so far may have more tasks in the catalogue: look it up too.
        self._looked_up.add(name)
        self._load_from_catalogue(name)
        return name in self.tasks or name in self.groups or name in self.tags

    def _load_from_catalogue(self, name: str) -> None:
        """Register what lm-eval's catalogue defines under `name`: the task or group of that
        name (its first definition in path order, as lm-eval's index keeps), or every task
        tagged with it. Other files that merely mention the name are not parsed further."""
        assert self.catalogue is not None
        root = self.catalogue.root
        for path in self.catalogue.candidates(name):
            try:
                data = load_task_yaml(path)
            except LmevalError:
                continue  # a file that only mentions the name; its own errors are not ours
            tags = data.get("tag") or []
            tags = [tags] if isinstance(tags, str) else tags
            if data.get("group") == name and "task" in data and name not in self.groups:
                group = group_config_from_dict(data, path)
                self.groups[name] = group
                self.roots[name] = root
            elif ("group" not in data or "class" in data) and data.get("task") == name and name not in self.tasks:
                self._add_task({k: v for k, v in data.items() if k != "group"}, path, root)  # class: a task
            elif "group" not in data and name in tags and isinstance(data.get("task"), str):
                task = data["task"]
                if task not in self.tasks and task not in self.groups:
                    self._add_task(data, path, root)
                    self._looked_up.add(task)

    # -- names --------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return sorted({*self.tasks, *self.groups, *self.tags})

    def _unknown(self, name: str) -> LmevalError:
        hint = close_matches(name, self.names)
        if self.catalogue is None and lm_eval_tasks_dir() is None and not hint:
            hint = ' (tasks of lm-eval\'s catalogue need the extra: pip install "pytest-lmeval[catalogue]")'
        return LmevalError(f"unknown task {name!r}{hint}")

    def _members(self, group: GroupConfig) -> list[tuple[str, dict[str, Any]]]:
        """A group's members as (name, overrides): unknown names given with a definition
        become inline tasks or groups named `<group>::<name>`, as lm-eval names them."""
        out = []
        for member in group.members:
            name, overrides = member.name, member.overrides
            if not self._known(name) and overrides:
                full = f"{group.group}::{name}"
                if full not in self.tasks and full not in self.groups:
                    data = {**overrides, member.declared_as: full}
                    if member.declared_as == "group":
                        self.groups[full] = group_config_from_dict(data, group.source)
                    else:
                        self._add_task(data, group.source, self.roots.get(group.group, group.source.parent))
                    self.roots[full] = self.roots.get(group.group, group.source.parent)
                name, overrides = full, {}
            out.append((name, overrides))
        return out

    def leaves(self, name: str, _stack: tuple[str, ...] = ()) -> list[str]:
        """The tasks under a task, group or tag name, in declaration order, without repeats."""
        return list(dict.fromkeys(cfg.task for cfg in self._configs(name, {}, _stack)))

    def _configs(self, name: str, overrides: dict[str, Any], stack: tuple[str, ...]) -> list[TaskConfig]:
        if name in stack:
            raise LmevalError(f"group cycle: {' -> '.join((*stack, name))}")
        if not self._known(name):
            raise self._unknown(name)
        if name in self.tasks:
            return [self._derived(name, overrides)]
        out: list[TaskConfig] = []
        if name in self.groups:
            group = self.groups[name]
            base = {**group.overrides, **overrides}
            for member, own in self._members(group):
                out.extend(self._configs(member, {**base, **own}, (*stack, name)))
        else:  # a tag: its tasks, in name order as lm-eval builds them
            for task in sorted(self.tags[name]):
                out.extend(self._configs(task, overrides, (*stack, name)))
        return out

    def _derived(self, name: str, overrides: dict[str, Any]) -> TaskConfig:
        base = self.tasks[name]
        overrides = {k: v for k, v in overrides.items() if k not in ("task", "tag", "group")}
        if not overrides:
            return base
        if not self.raw[name]:  # a Python declaration: the group's keys replace its fields
            unknown = set(overrides) - {f.name for f in fields(TaskConfig)}
            if unknown:
                raise LmevalError(f"{base.source}: task {name!r}: a group overrides unknown keys {sorted(unknown)}")
            return replace(base, **overrides)
        data = {**self.raw[name], **overrides, "task": name}
        return task_config_from_yaml(data, base.source)

    def configs_for(self, picked: Iterable[str]) -> dict[str, TaskConfig]:
        """Every task under the picked names with the overrides of the groups it was reached
        through. The same task reached with different overrides is an error, as in lm-eval."""
        out: dict[str, TaskConfig] = {}
        via: dict[str, str] = {}
        for name in picked:
            for cfg in self._configs(name, {}, ()):
                known = out.get(cfg.task)
                if known is not None and known.to_record() != cfg.to_record():
                    raise LmevalError(
                        f"task {cfg.task!r} is selected twice with different settings (through {via[cfg.task]!r} "
                        f"and {name!r}): run them in separate pytest runs"
                    )
                out.setdefault(cfg.task, cfg)
                via.setdefault(cfg.task, name)
        return out

    def children(self, group: str) -> list[str]:
        """A group's direct members, with tags expanded to their tasks."""
        out: list[str] = []
        for member, _ in self._members(self.groups[group]):
            self._known(member)
            out.extend(sorted(self.tags[member]) if member in self.tags and member not in self.groups else [member])
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
                # The project's names first (they shadow the catalogue's, as by name); a pattern
                # matching none of them matches lm-eval's catalogue names.
                matches = [n for n in self.names if fnmatch.fnmatchcase(n, name)]
                catalogue = self.catalogue.names() if self.catalogue is not None and not matches else {}
                tags = set(self.tags) | set(catalogue.get("tags", ())) - set(self.groups)
                matches += sorted(n for names in catalogue.values() for n in names if fnmatch.fnmatchcase(n, name))
                if not matches:
                    raise LmevalError(f"--tasks {name!r} matches no task or group")
                # A tag that a pattern matches adds nothing: its tasks match or are named.
                matches = [m for m in matches if m not in tags or m in self.groups] or matches  # only tags: them
                matches = [m for m in matches if self._known(m)]  # a catalogue name: read it now
            else:
                self.leaves(name)  # raises a clear error for an unknown name
                matches = [name]
            picked.extend(m for m in matches if m not in picked)
        if not picked:
            raise LmevalError("--tasks is empty: name at least one task or group")
        return picked

    def describe(self, pattern: str | None = None) -> str:
        """The `--tasks list` listing (`--tasks list=PATTERN`: only the names it matches, a
        shell-style wildcard, or any name containing it): this project's benchmarks, then the
        groups, tags and tasks of lm-eval's catalogue."""
        if pattern and not any(ch in pattern for ch in "*?["):
            pattern = f"*{pattern}*"

        def keep(names: Iterable[str]) -> list[str]:
            return sorted(n for n in names if not pattern or fnmatch.fnmatchcase(n, pattern))

        root = self.catalogue.root if self.catalogue is not None else None
        ours = {n for n in (*self.tasks, *self.groups) if self.roots.get(n) != root}
        groups = keep(g for g in self.groups if g in ours)
        tags = keep(t for t in set(self.tags) - set(self.groups) if any(m in ours for m in self.tags[t]))
        tasks = keep(t for t in self.tasks if t in ours)
        lines = [f"Benchmarks of this project{f' matching {pattern!r}' if pattern else ''}:", "Groups:"]
        lines += [f"  {name:<40} {len(self.leaves(name)):>4} tasks" for name in groups] or ["  (none)"]
        lines.append("Tags:")
        lines += [f"  {name:<40} {len(self.tags[name]):>4} tasks" for name in tags] or ["  (none)"]
        lines.append("Tasks:")
        lines += [
            f"  {name:<40} {self.tasks[name].output_type:<16} {self.tasks[name].dataset_path}" for name in tasks
        ] or ["  (none)"]
        if self.catalogue is None:
            if lm_eval_tasks_dir() is None:
                lines.append('(lm-eval\'s catalogue is not installed: pip install "pytest-lmeval[catalogue]")')
            return "\n".join(lines)
        names = self.catalogue.names()
        shown = {kind: [n for n in keep(names[kind]) if n not in ours] for kind in ("groups", "tags", "tasks")}
        lines.append(
            f"lm-eval's catalogue ({self.catalogue.root}){f' matching {pattern!r}' if pattern else ''}: "
            f"{len(shown['groups'])} groups, {len(shown['tags'])} tags, {len(shown['tasks'])} tasks"
        )
        for kind in ("groups", "tags", "tasks"):
            lines.append(f"  {kind.capitalize()}:")
            lines += [f"    {name}" for name in shown[kind]] or ["    (none)"]
        return "\n".join(lines)
