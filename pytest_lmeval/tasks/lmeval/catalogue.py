"""lm-evaluation-harness's own task catalogue (the YAML that ships in the `lm-eval` package),
reachable by name when that package is installed.

It holds some 14,000 YAML files, too many to parse on every run, so nothing is parsed up front:
a name the project's own folders do not define is looked up in an index of the words of the
files' text (kept on disk until a file changes), and only the files that mention it (and the
files that include a fragment mentioning it) are parsed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

_SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints"}
INDEX_FORMAT = 1  # of the word index kept on disk; bump when its content changes


def _index_dir() -> Path:
    from ...core.files import default_cache_dir

    return default_cache_dir() / "catalogue-index"


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
_KEY = re.compile(r"^[\"']?(task|group|tag)[\"']?\s*:[ \t]*(.*?)\s*$", re.M)


def _scalar(value: str) -> str | None:
    value = value.split(" #", 1)[0].strip().strip("'\"")
    return value if value and not value.startswith(("[", "{", "!", "&", "*", "|", ">")) else None


def _declared(text: str) -> tuple[str | None, str | None, list[str]]:
    """A YAML text's top-level task name (a scalar `task:`), group name (a `group:` whose
    `task:` is a list) and tags, read as text (no parsing): lm-eval's index, cheaply."""
    keys: dict[str, str] = {}
    tags: list[str] = []
    for match in _KEY.finditer(text):
        key, value = match.group(1), match.group(2)
        keys.setdefault(key, value)
        if key == "tag":
            if _scalar(value):
                tags.append(_scalar(value))  # type: ignore[arg-type]
            elif value.startswith("["):
                tags += [t.strip().strip("'\"") for t in value.strip("[]").split(",") if t.strip()]
            elif not value:
                for line in text[match.end() :].splitlines()[1:]:
                    item = _LIST_ITEM.match(line)
                    if not item:
                        break
                    tags.append(item.group(1).strip("'\""))
    task = _scalar(keys["task"]) if "task" in keys else None
    group = _scalar(keys["group"]) if "group" in keys else None
    if group and task:  # an old-style task naming its group: the group works as a tag
        return task, None, [*tags, group]
    return task, (group if group and "task" in keys else None), tags


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
            if name:  # the catalogue's paths are resolved already: normalising is enough (and cheap)
                out.append(Path(os.path.normpath(path.parent / name)))
    return out


@dataclass
class Catalogue:
    root: Path
    _texts: dict[Path, str] | None = field(default=None, repr=False)
    # the word index: file numbers (into _paths) of the files mentioning each word, and of the
    # files that include each file
    _paths: list[Path] = field(default_factory=list, repr=False)
    _words: dict[str, list[int]] | None = field(default=None, repr=False)
    _included_by: dict[int, list[int]] = field(default_factory=dict, repr=False)
    _number: dict[Path, int] | None = field(default=None, repr=False)
    _names: dict[str, set[str]] | None = field(default=None, repr=False)

    def _file_names(self) -> list[str]:
        """The catalogue's YAML files as sorted path strings (a fifth of the time of Path
        objects, on every run that names a catalogue task)."""
        found = []
        for folder, dirs, files in os.walk(self.root.resolve().as_posix()):
            dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
            found += [f"{folder}/{f}" for f in files if f.endswith((".yaml", ".yml", "_yaml"))]
        return sorted(found)

    def _files(self) -> list[Path]:
        return [Path(name) for name in self._file_names()]

    def _all(self, files: list[Path] | None = None) -> dict[Path, str]:
        """Every file's text, the included ones too (and the word index, from them); `files`:
        the catalogue's files when the caller has listed them already."""
        if self._texts is None:
            texts: dict[Path, str] = {}
            for path in self._files() if files is None else files:
                try:
                    texts[path] = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
            todo = list(texts.items())
            includes: list[tuple[Path, Path]] = []
            while todo:  # includes may name files without a YAML suffix ("afrimmlu_direct")
                path, text = todo.pop()
                for inc in _includes(path, text):
                    includes.append((inc, path))
                    if inc not in texts and inc.is_file():
                        try:
                            texts[inc] = inc.read_text(encoding="utf-8")
                        except (OSError, UnicodeDecodeError):
                            continue
                        todo.append((inc, texts[inc]))
            if self._words is None:
                self._paths = sorted({*texts, *(p for pair in includes for p in pair)}, key=lambda p: p.as_posix())
                number = {p: i for i, p in enumerate(self._paths)}
                words: dict[str, list[int]] = {}
                for path, text in texts.items():
                    for word in {w.rstrip(".") for w in _WORD.findall(text)}:
                        words.setdefault(word, []).append(number[path])
                for inc, path in includes:
                    self._included_by.setdefault(number[inc], []).append(number[path])
                self._words = words
            self._texts = texts
        return self._texts

    def _index(self) -> dict[str, list[int]]:
        """The word index, from a copy on disk while the catalogue's files are unchanged:
        reading and indexing 14,000 files takes a second or more of every run that names a
        catalogue task."""
        if self._words is not None:
            return self._words
        names = self._file_names()
        stats = []
        for name in names:
            try:
                st = os.stat(name)
            except OSError:
                continue
            stats.append((name, st.st_size, st.st_mtime_ns))
        key = hashlib.sha256(repr((INDEX_FORMAT, self.root.resolve().as_posix(), stats)).encode()).hexdigest()[:20]
        stored = _index_dir() / f"{key}.pickle"
        try:
            with open(stored, "rb") as fh:
                paths, self._words, self._included_by = pickle.load(fh)
            self._paths = [Path(p) for p in paths]
            return self._words
        except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError):
            pass
        self._all([Path(name) for name in names])
        try:
            stored.parent.mkdir(parents=True, exist_ok=True)
            part = stored.with_suffix(f".{os.getpid()}.part")
            with open(part, "wb") as fh:
                index = ([p.as_posix() for p in self._paths], self._words, self._included_by)
                pickle.dump(index, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(part, stored)
        except OSError:
            pass  # a read-only cache folder: the index is built again next time
        assert self._words is not None
        return self._words

    def names(self) -> dict[str, set[str]]:
        """Every task, group and tag name the catalogue declares ("tasks", "groups", "tags"),
        read from the files' text (for `--tasks list` and wildcards; nothing is parsed)."""
        if self._names is None:
            out: dict[str, set[str]] = {"tasks": set(), "groups": set(), "tags": set()}
            texts = self._all()

            def tags_of(path: Path, seen: tuple[Path, ...] = ()) -> list[str]:
                """A file's tags, else those of the files it includes (the including file wins)."""
                own = _declared(texts.get(path, ""))[2]
                if own or path in seen:
                    return own
                return [t for inc in _includes(path, texts.get(path, "")) for t in tags_of(inc, (*seen, path))]

            for path, text in texts.items():
                if path.suffix != ".yaml":
                    continue
                task, group, tags = _declared(text)
                tags = tags or ([] if group else tags_of(path))
                if group:
                    out["groups"].add(group)
                elif task:
                    out["tasks"].add(task)
                out["tags"].update(tags)
            out["tags"] -= out["groups"] | out["tasks"]
            self._names = out
        return self._names

    def candidates(self, name: str) -> list[Path]:
        """Task YAML files that may define `name` as a task, group or tag: those whose text
        holds the name as a whole word, and those including (at any depth) a file that does.
        Sorted by path, as lm-eval's index walks them (its first definition wins)."""
        found = {self._paths[i] for i in self._index().get(name, ())}
        if not found and not _WORD.fullmatch(name):  # a name the word index splits: "x_(general)"
            found = {path for path, text in self._all().items() if name in text}
        if found and self._number is None:
            self._number = {p: i for i, p in enumerate(self._paths)}
        todo = [self._number[p] for p in found if p in self._number] if found else []
        while todo:
            for parent in self._included_by.get(todo.pop(), []):
                if self._paths[parent] not in found:
                    found.add(self._paths[parent])
                    todo.append(parent)
        return sorted((p for p in found if p.suffix == ".yaml"), key=lambda p: p.as_posix())
