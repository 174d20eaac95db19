"""Where a task's documents come from: a hub data set (served offline by the mirror), local
files, or rows written in the benchmark file itself.

Each source answers two questions, `rows(split, data_dir, task)` and, for messages about the
data (a split without documents), `where(split, data_dir)`, so a task never cares which kind
it has; YAML tasks get a `Hub` source built from their `dataset_path`/`dataset_name`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import LmevalError
from .data import load_split, local_data_files, mirror_file, mirror_folder, read_rows


@dataclass(frozen=True)
class Hub:
    """A Hugging Face data set: `datasets.load_dataset(path, name, split=...)`, or the offline
    mirror's `DIR/<path>/<name or default>/<split>.jsonl` when --data-dir is given."""

    path: str
    name: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)  # extra load_dataset arguments

    def rows(self, split: str, data_dir: Path | None, task: str) -> list[dict[str, Any]]:
        return load_split(self.path, self.name, split, data_dir, task, dict(self.kwargs))

    def where(self, split: str, data_dir: Path | None) -> str:
        data_files = self.kwargs.get("data_files")
        local = local_data_files(data_files, split) if data_files is not None else None
        if local is not None:
            return str(local)
        if data_dir is None:
            return f"{self.describe()} split {split!r} (the hub)"
        try:
            found = mirror_file(data_dir, self.path, self.name, split, "")
        except LmevalError:
            found = None
        return str(found or mirror_folder(data_dir, self.path, self.name) / f"{split}.jsonl")

    def describe(self) -> str:
        return self.path + (f"/{self.name}" if self.name else "")


@dataclass(frozen=True)
class Files:
    """Local files, one per split (jsonl, csv or parquet), relative to the declaring file."""

    splits: Mapping[str, Path]

    def rows(self, split: str, data_dir: Path | None, task: str) -> list[dict[str, Any]]:
        path = self.splits.get(split)
        if path is None:
            raise LmevalError(f"task {task!r}: no {split!r} split: its local data has {sorted(self.splits)}")
        if not path.is_file():
            raise LmevalError(f"task {task!r}: missing data: {path} does not exist")
        return read_rows(path)

    def where(self, split: str, data_dir: Path | None) -> str:
        return str(self.splits.get(split, split))

    def describe(self) -> str:
        return ", ".join(str(p) for p in self.splits.values())


@dataclass(frozen=True)
class Rows:
    """Documents given inline, one list per split."""

    splits: Mapping[str, Sequence[Mapping[str, Any]]]

    def rows(self, split: str, data_dir: Path | None, task: str) -> list[dict[str, Any]]:
        if split not in self.splits:
            raise LmevalError(f"task {task!r}: no {split!r} split: its rows have {sorted(self.splits)}")
        rows = self.splits[split]
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise LmevalError(
                    f"task {task!r}: row {i} of its {split!r} rows is a {type(row).__name__}, not a mapping"
                )
        return [dict(r) for r in rows]

    def where(self, split: str, data_dir: Path | None) -> str:
        return "its inline rows"

    def describe(self) -> str:
        return "inline rows"


Source = Hub | Files | Rows
