"""Where a declared task's documents and few-shot examples come from: `hub(...)`, `local(...)`,
`rows(...)` and `fewshot(...)`.

They are kept apart from the output-type declarations (declare.py) because every output type
takes them alike; a declaration turns them into the config's data source and few-shot keys.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import LmevalError
from .sources import Files, Hub, Rows, Source

Doc = Mapping[str, Any]
Text = str | Callable[[Doc], Any]


def declaring_file(depth: int) -> Path:
    """The benchmark file `depth` frames above the caller: the task's source, where relative
    paths start."""
    file = sys._getframe(depth + 1).f_globals.get("__file__")
    return Path(file).resolve() if file else Path.cwd() / "<python>"


@dataclass(frozen=True)
class Data:
    """A task's documents: where they come from and which split is evaluated."""

    source: Source
    split: str = "test"


def hub(path: str, name: str | None = None, *, split: str, **dataset_kwargs: Any) -> Data:
    """A Hugging Face hub data set (also served offline by `--data-dir`'s mirror)."""
    return Data(Hub(path, name, dataset_kwargs), split)


def local(test: str | Path | None = None, *, split: str = "test", **splits: str | Path) -> Data:
    """Local jsonl, csv or parquet files, one per split, relative to the benchmark file:
    `local("questions.jsonl")`, or `local(test="q.jsonl", train="examples.jsonl")`."""
    here = declaring_file(1).parent
    named = {**({"test": test} if test is not None else {}), **splits}
    if not named:
        raise LmevalError("local(): name at least one file")
    paths = {k: (Path(v) if Path(v).is_absolute() else here / v) for k, v in named.items()}
    return Data(Files(paths), split)


def rows(test: Sequence[Doc], *, split: str = "test", **splits: Sequence[Doc]) -> Data:
    """Documents written in the benchmark file: `rows(DOCS)`, or `rows(DOCS, train=EXAMPLES)`."""
    return Data(Rows({"test": list(test), **{k: list(v) for k, v in splits.items()}}), split)


@dataclass(frozen=True)
class FewShot:
    """How few-shot examples are chosen and joined. `exclude_doc` leaves the evaluated document
    out of its own examples the way lm-eval does when a task has no test split: the random
    sampler draws one example more and drops the document if it drew it."""

    n: int | None = None
    split: str | None = None
    sampler: str = "random"  # or "first_n"
    seed: int | None = None
    samples: Sequence[Doc] | None = None  # fixed examples instead of a split
    prompt: Text | None = None  # the examples' own prompt and target, where they differ
    target: Any = None
    delimiter: str = "\n\n"
    description: Text | None = None
    exclude_doc: bool = False


def fewshot(
    n: int | None = None,
    *,
    split: str | None = None,
    sampler: str = "random",
    seed: int | None = None,
    samples: Sequence[Doc] | None = None,
    prompt: Text | None = None,
    target: Any = None,
    delimiter: str = "\n\n",
    description: Text | None = None,
    exclude_doc: bool = False,
) -> FewShot:
    """Few-shot examples: `n` of them (None: as many as `--num-fewshot` asks), from `split` or
    the fixed `samples`, picked by `sampler` ("random", seeded by `seed` or `--seed`, or
    "first_n"), joined by `delimiter`, after `description`."""
    if sampler not in ("random", "first_n"):
        raise LmevalError(f"fewshot(): sampler must be 'random' or 'first_n', got {sampler!r}")
    return FewShot(n, split, sampler, seed, samples, prompt, target, delimiter, description, exclude_doc)
