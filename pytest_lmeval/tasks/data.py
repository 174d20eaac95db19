"""Loading a task's documents: from the offline mirror, or from the hub through `datasets`.

Mirror layout (DESIGN.md): DIR/<dataset_path>/<dataset_name or "default">/<split>.<jsonl|parquet>,
with the hub data set's columns. Only the splits a run uses are opened.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.errors import LmevalError

MIRROR_SUFFIXES = (".jsonl", ".parquet")


def mirror_folder(data_dir: Path, dataset_path: str, dataset_name: str | None) -> Path:
    return data_dir / dataset_path / (dataset_name or "default")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise LmevalError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from None
    return rows


def read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


# dataset_kwargs that change nothing about the rows read.
_INERT_DATASET_KWARGS = {"trust_remote_code", "verification_mode", "download_mode", "num_proc"}


def _local_data_files(data_files: Any, split: str) -> Path | None:
    """The local file `data_files` names for a split (a path, a list of one, or a mapping of
    split to either), when it exists on disk."""
    chosen = data_files.get(split) if isinstance(data_files, dict) else data_files
    if isinstance(chosen, (list, tuple)):
        chosen = chosen[0] if len(chosen) == 1 else None
    path = Path(str(chosen)).expanduser() if isinstance(chosen, (str, Path)) else None
    return path if path is not None and path.is_file() else None


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
        local = _local_data_files(kwargs["data_files"], split)
        if local is not None and local.suffix in MIRROR_SUFFIXES:
            return read_jsonl(local) if local.suffix == ".jsonl" else read_parquet(local)
    if data_dir is not None:
        unserved = sorted(set(kwargs) - _INERT_DATASET_KWARGS)
        if unserved:
            raise LmevalError(
                f"task {task!r}: dataset_kwargs {unserved} change which data is read, and the offline mirror "
                f"cannot apply them: put the rows they select in {mirror_folder(data_dir, dataset_path, dataset_name)}"
                f"/{split}.jsonl and drop the key with an --include-path override, or run without --data-dir"
            )
        folder = mirror_folder(data_dir, dataset_path, dataset_name)
        for suffix in MIRROR_SUFFIXES:
            path = folder / f"{split}{suffix}"
            if path.is_file():
                return read_jsonl(path) if suffix == ".jsonl" else read_parquet(path)
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
