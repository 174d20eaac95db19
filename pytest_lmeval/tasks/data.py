"""Loading a task's documents: from the offline mirror, or from the hub through `datasets`.

Mirror layout (DESIGN.md): DIR/<dataset_path>/<dataset_name or "default">/<split>.<jsonl|parquet>,
with the hub data set's columns. Only the splits a run uses are opened.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import LmevalError

MIRROR_SUFFIXES = (".jsonl", ".parquet")


def mirror_folder(data_dir: Path, dataset_path: str, dataset_name: str | None) -> Path:
    return data_dir / dataset_path / (dataset_name or "default")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise LmevalError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from None
    return rows


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def load_split(
    dataset_path: str, dataset_name: str | None, split: str, data_dir: Path | None, task: str
) -> list[dict[str, Any]]:
    """Rows of one split as plain dicts, in the data set's order."""
    if data_dir is not None:
        folder = mirror_folder(data_dir, dataset_path, dataset_name)
        for suffix in MIRROR_SUFFIXES:
            path = folder / f"{split}{suffix}"
            if path.is_file():
                return _read_jsonl(path) if suffix == ".jsonl" else _read_parquet(path)
        raise LmevalError(
            f"task {task!r}: missing data: looked for {folder / split}.jsonl (or .parquet) "
            f"in the data mirror {data_dir}; add that file with the hub data set's columns, "
            "point --data-dir/LMEVAL_DATA_DIR at a mirror that has it, or run without "
            "--data-dir to download from the Hugging Face hub"
        )
    return _load_from_hub(dataset_path, dataset_name, split, task)


def _load_from_hub(dataset_path: str, dataset_name: str | None, split: str, task: str) -> list[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_dataset(dataset_path, dataset_name, split=split)
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
    """Run an lm-eval `process_docs` helper, which takes and returns a `datasets.Dataset`."""
    import datasets

    datasets.disable_progress_bars()
    try:
        out = fn(datasets.Dataset.from_list(rows))
    except LmevalError:
        raise
    except Exception as exc:
        raise LmevalError(f"task {task!r}: process_docs {fn!r} failed: {exc}") from None
    return out.to_list() if hasattr(out, "to_list") else list(out)
