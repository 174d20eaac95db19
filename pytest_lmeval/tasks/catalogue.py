"""lm-evaluation-harness's own task catalogue (the YAML that ships in the `lm-eval` package),
reachable by name when that package is installed.

It holds some 14,000 YAML files, too many to parse on every run, so nothing is parsed up front:
a name the project's own folders do not define is looked up by reading the files as text and
parsing only those that mention it (and the files that include a fragment mentioning it).
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

_SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints"}


def lm_eval_tasks_dir() -> Path | None:
    """The `lm_eval/tasks` folder of an installed lm-eval, found without importing it."""
    try:
        spec = importlib.util.find_spec("lm_eval")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "tasks"
    return folder if folder.is_dir() else None


_WORD = re.compile(r"[\w\-.]+")  # a name as it appears in YAML text, dots and dashes included
_INCLUDE = re.compile(r"^[\"']?include[\"']?\s*:\s*(.*)$", re.M)
_LIST_ITEM = re.compile(r"^\s*-\s*(.+?)\s*$")


def _includes(path: Path, text: str) -> list[Path]:
    """The files a YAML text includes (the scalar and the list form), resolved beside it."""
    out = []
    for match in _INCLUDE.finditer(text):
        value = match.group(1).strip()
        names = [value] if value else []
        if not value:  # a block list on the following lines
            for line in text[match.end() :].splitlines()[1:]:
                item = _LIST_ITEM.match(line)
                if not item:
                    break
                names.append(item.group(1))
        for name in names:
            name = name.strip().strip("'\"")
            if name:
                out.append((path.parent / name).resolve())
    return out


@dataclass
class Catalogue:
    root: Path
    _texts: dict[Path, str] | None = field(default=None, repr=False)
    _included_by: dict[Path, list[Path]] = field(default_factory=dict, repr=False)
    _words: dict[str, set[Path]] = field(default_factory=dict, repr=False)

    def _all(self) -> dict[Path, str]:
        if self._texts is None:
            texts: dict[Path, str] = {}
            for path in sorted(self.root.resolve().rglob("*"), key=lambda p: p.as_posix()):
                if _SKIP_DIRS & set(path.parts) or not path.is_file():
                    continue
                if path.suffix in (".yaml", ".yml") or path.name.endswith("_yaml"):
                    try:
                        texts[path] = path.read_text(encoding="utf-8")
                    except (OSError, UnicodeDecodeError):
                        continue
            for path, text in texts.items():
                for inc in _includes(path, text):
                    self._included_by.setdefault(inc, []).append(path)
                for word in set(_WORD.findall(text)):
                    self._words.setdefault(word.rstrip("."), set()).add(path)
            self._texts = texts
        return self._texts

    def candidates(self, name: str) -> list[Path]:
        """Task YAML files that may define `name` as a task, group or tag: those whose text
        holds the name as a whole word, and those including (at any depth) a file that does.
        Sorted by path, as lm-eval's index walks them (its first definition wins)."""
        self._all()
        found = set(self._words.get(name, ()))
        todo = list(found)
        while todo:
            for parent in self._included_by.get(todo.pop(), []):
                if parent not in found:
                    found.add(parent)
                    todo.append(parent)
        return sorted((p for p in found if p.suffix == ".yaml"), key=lambda p: p.as_posix())
