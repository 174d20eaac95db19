"""Loading a task's documents: from the offline mirror, or from the hub through `datasets`.

Mirror layout (DESIGN.md): DIR/<dataset_path>/<dataset_name or "default">/<split>.<jsonl|parquet>,
with the hub data set's columns. Only the splits a run uses are opened. A data set's path, name
and split are names, never paths: a task's YAML (or a benchmark file) cannot make the run read
a file outside the mirror, or hand `datasets` a local folder instead of a hub name.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path, PureWindowsPath
from typing import Any

from ..core.errors import LmevalError

MIRROR_SUFFIXES = (".jsonl", ".parquet")


def mirror_folder(data_dir: Path, dataset_path: str, dataset_name: str | None) -> Path:
    return data_dir / dataset_path / (dataset_name or "default")


# -- reading files ----------------------------------------------------------------------------
def _text(path: Path) -> str:
    """A file's text as UTF-8 (a byte-order mark dropped); other bytes are one line naming the
    file, line and column, where a decoding error mid-file would be an internal error."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise LmevalError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column}): save the file as UTF-8"
        ) from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One document per line, each a JSON object (blank lines skipped)."""
    rows = []
    # split on "\n" alone: a JSON string may hold U+2028 and other characters splitlines() cuts at
    for lineno, line in enumerate(_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            at = "" if exc.msg.endswith(" at") else " at"  # "Unterminated string starting at"
            raise LmevalError(f"{path}:{lineno}: invalid JSON: {exc.msg}{at} column {exc.colno}") from None
        except RecursionError:
            raise LmevalError(f"{path}:{lineno}: invalid JSON: nested too deeply") from None
        if not isinstance(row, dict):
            raise LmevalError(
                f"{path}:{lineno}: expected one JSON object per line (a document), got {type(row).__name__}"
            )
        rows.append(row)
    return rows


def read_csv(path: Path) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(_text(path), newline=""))
    try:
        return [dict(row) for row in reader]
    except csv.Error as exc:
        raise LmevalError(f"{path}:{reader.line_num}: invalid CSV: {exc}") from None


def read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # ArrowInvalid, OSError: a truncated or foreign file
        text = str(exc).strip().splitlines()
        raise LmevalError(f"{path}: not a readable parquet file ({text[0] if text else type(exc).__name__})") from None


READERS = {".jsonl": read_jsonl, ".json": read_jsonl, ".csv": read_csv, ".parquet": read_parquet}


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A local data file's rows, by its suffix (jsonl, json lines, csv, parquet)."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise LmevalError(f"{path}: unknown file type (use .jsonl, .csv or .parquet)")
    return reader(path)


# -- names, never paths -----------------------------------------------------------------------
def _is_path(value: str) -> bool:
    parts = value.replace("\\", "/").split("/")
    return (
        value.startswith(("/", "~", "\\")) or bool(PureWindowsPath(value).drive) or any(p in (".", "..") for p in parts)
    )


def check_names(dataset_path: str, dataset_name: str | None, split: str, task: str) -> None:
    """A data set's path and name are hub names (`org/name`, a config name) and its split a
    split's name: one line for anything that reads as a file system path."""
    given = [("dataset_path", dataset_path), ("dataset_name", dataset_name)]
    for what, value in given:
        if value is not None and _is_path(value):
            raise LmevalError(
                f"task {task!r}: {what} {value!r} is a path, not a data set name: data sets are named as on "
                "the hub (org/name) and read from under --data-dir; for files of your own use "
                "lm.local(...) or dataset_kwargs data_files"
            )
    if _is_path(split) or "/" in split or "\\" in split:
        raise LmevalError(f"task {task!r}: split {split!r} is a path, not a split name")


def _inside(path: Path, data_dir: Path, task: str) -> Path:
    """`path` when it names a place under the mirror; else one line. Links are not followed:
    a mirror may be assembled from links to other copies (tests/mirror.py builds one), and
    its owner made them; what a task's names may not do is climb out of it."""
    resolved, root = Path(os.path.normpath(os.path.abspath(path))), Path(os.path.normpath(os.path.abspath(data_dir)))
    if resolved != root and root not in resolved.parents:
        raise LmevalError(
            f"task {task!r}: {path} lies outside the data mirror {data_dir}: data is read only from under --data-dir"
        )
    return path


def mirror_file(data_dir: Path, dataset_path: str, dataset_name: str | None, split: str, task: str) -> Path | None:
    """The mirror's file for a split (jsonl first, then parquet), or None when it has none."""
    check_names(dataset_path, dataset_name, split, task)
    folder = _inside(mirror_folder(data_dir, dataset_path, dataset_name), data_dir, task)
    for suffix in MIRROR_SUFFIXES:
        path = _inside(folder / f"{split}{suffix}", data_dir, task)
        if path.is_file():
            return path
    return None


# dataset_kwargs that change nothing about the rows read.
_INERT_DATASET_KWARGS = {"trust_remote_code", "verification_mode", "download_mode", "num_proc"}


def local_data_files(data_files: Any, split: str) -> Path | None:
    """The local file `data_files` names for a split (a path, a list of one, or a mapping of
    split to either), when it exists on disk and the mirror's readers read it."""
    chosen = data_files.get(split) if isinstance(data_files, dict) else data_files
    if isinstance(chosen, (list, tuple)):
        chosen = chosen[0] if len(chosen) == 1 else None
    path = Path(str(chosen)).expanduser() if isinstance(chosen, (str, Path)) else None
    return path if path is not None and path.is_file() and path.suffix in MIRROR_SUFFIXES else None


def load_split(
    dataset_path: str,
    dataset_name: str | None,
    split: str,
    data_dir: Path | None,
    task: str,
    dataset_kwargs: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Rows of one split as plain dicts, in the data set's order. `dataset_kwargs` go to
    `datasets.load_dataset` as lm-eval passes them; offline, `data_files` naming local files
    is read directly and any other key that changes the rows is refused by name."""
    kwargs = dict(dataset_kwargs or {})
    if kwargs.get("data_files") is not None:
        local = local_data_files(kwargs["data_files"], split)
        if local is not None:
            return read_rows(local)
    check_names(dataset_path, dataset_name, split, task)
    if data_dir is not None:
        unserved = sorted(set(kwargs) - _INERT_DATASET_KWARGS)
        if unserved:
            raise LmevalError(
                f"task {task!r}: dataset_kwargs {unserved} change which data is read, and the offline mirror "
                f"cannot apply them: put the rows they select in {mirror_folder(data_dir, dataset_path, dataset_name)}"
                f"/{split}.jsonl and drop the key with an --include-path override, or run without --data-dir"
            )
        path = mirror_file(data_dir, dataset_path, dataset_name, split, task)
        if path is not None:
            return read_rows(path)
        folder = mirror_folder(data_dir, dataset_path, dataset_name)
        raise LmevalError(
            f"task {task!r}: missing data: looked for {folder / split}.jsonl (or .parquet) "
            f"in the data mirror {data_dir}; add that file with the hub data set's columns, "
            "point --data-dir/LMEVAL_DATA_DIR at a mirror that has it, or run without "
            "--data-dir to download from the Hugging Face hub"
        )
    return _load_from_hub(dataset_path, dataset_name, split, task, kwargs)


def _load_from_hub(
    dataset_path: str, dataset_name: str | None, split: str, task: str, kwargs: dict[str, Any]
) -> list[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_dataset(dataset_path, dataset_name, split=split, **kwargs)
    except Exception as exc:  # network, missing split, missing config: all end here
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LmevalError(
            f"task {task!r}: missing data: could not load {dataset_path}"
            f"{'/' + dataset_name if dataset_name else ''} split {split!r} from the hub "
            f"({first_line}); for offline use pass --data-dir DIR (or LMEVAL_DATA_DIR) with "
            f"DIR/{dataset_path}/{dataset_name or 'default'}/{split}.jsonl"
        ) from None
    return ds.to_list()


def apply_process_docs(fn: Any, rows: list[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """Run a `process_docs` helper: lm-eval's take and return a `datasets.Dataset`; a Python
    task's (declare.PerDocument) map plain rows."""
    if getattr(fn, "per_document", False):
        try:
            return fn(rows)
        except Exception as exc:
            raise LmevalError(f"task {task!r}: process {fn!r} failed: {type(exc).__name__}: {exc}") from None
    import datasets

    datasets.disable_progress_bars()
    try:
        out = fn(datasets.Dataset.from_list(rows))
    except LmevalError:
        raise
    except Exception as exc:
        raise LmevalError(f"task {task!r}: process_docs {fn!r} failed: {exc}") from None
    return out.to_list() if hasattr(out, "to_list") else list(out)
