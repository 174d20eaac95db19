"""Where a task's documents come from: a hub data set (served offline by the mirror), local
files, or rows written in the benchmark file itself.

Each source answers one question, `rows(split, data_dir, task)`, so a task never cares which
kind it has; YAML tasks get a `Hub` source built from their `dataset_path`/`dataset_name`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import LmevalError
from .data import load_split, read_jsonl, read_parquet


@dataclass(frozen=True)
class Hub:
    """A Hugging Face data set: `datasets.load_dataset(path, name, split=...)`, or the offline
    mirror's `DIR/<path>/<name or default>/<split>.jsonl` when --data-dir is given."""

    path: str
    name: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)  # extra load_dataset arguments

    def rows(self, split: str, data_dir: Path | None, task: str) -> list[dict[str, Any]]:
        return load_split(self.path, self.name, split, data_dir, task, dict(self.kwargs))

    def describe(self) -> str:
        return self.path + (f"/{self.name}" if self.name else "")


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [dict(row) for row in csv.DictReader(fh)]


_READERS = {".jsonl": read_jsonl, ".json": read_jsonl, ".csv": _read_csv, ".parquet": read_parquet}


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
        reader = _READERS.get(path.suffix.lower())
        if reader is None:
            raise LmevalError(f"task {task!r}: {path}: unknown file type (use .jsonl, .csv or .parquet)")
        return reader(path)

    def describe(self) -> str:
        return ", ".join(str(p) for p in self.splits.values())


@dataclass(frozen=True)
class Rows:
    """Documents given inline, one list per split."""

    splits: Mapping[str, Sequence[Mapping[str, Any]]]

    def rows(self, split: str, data_dir: Path | None, task: str) -> list[dict[str, Any]]:
        if split not in self.splits:
            raise LmevalError(f"task {task!r}: no {split!r} split: its rows have {sorted(self.splits)}")
        return [dict(r) for r in self.splits[split]]

    def describe(self) -> str:
        return "inline rows"


Source = Hub | Files | Rows
