"""Run the reference, lm-evaluation-harness, offline on the same data mirror as ours.

lm-eval reads data with `datasets.load_dataset(path, name)`; this serves that call from the
mirror (DIR/<path>/<name or default>/<split>.jsonl, read with the json module so values such as
MMLU's literal "None" stay strings). lm-eval opens a task's train split even for 0-shot runs;
a split the mirror lacks (HellaSwag, PIQA, BoolQ train) is served empty, which changes nothing
for 0-shot runs and fails loudly for few-shot ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets  # noqa: E402


class _MirrorDict(datasets.DatasetDict):
    def __getitem__(self, key: Any) -> Any:
        if key not in self and isinstance(key, str) and len(self):
            features = next(iter(self.values())).features
            return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
        return super().__getitem__(key)


def install_mirror(data_dir: Path) -> None:
    """Route datasets.load_dataset(path, name, ...) to the mirror for this process."""
    original = datasets.load_dataset

    def load_dataset(path: str | None = None, name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        path = kwargs.pop("path", path)
        name = kwargs.pop("name", name)
        folder = data_dir / str(path) / (name or "default")
        if not folder.is_dir():
            return original(path, name, *args, **kwargs)
        splits = {}
        for file in sorted(folder.glob("*.jsonl")):
            with file.open(encoding="utf-8") as fh:
                rows = [json.loads(line) for line in fh if line.strip()]
            splits[file.stem] = datasets.Dataset.from_list(rows)
        dd = _MirrorDict(splits)
        split = kwargs.get("split")
        return dd[split] if split else dd

    datasets.load_dataset = load_dataset


def run_reference(
    model_args: str,
    tasks: list[str],
    *,
    num_fewshot: int | None,
    limit: int | None,
    batch_size: int | str,
    data_dir: Path,
    device: str = "cpu",
) -> dict[str, Any]:
    """lm_eval.simple_evaluate with samples logged, on the mirror."""
    install_mirror(data_dir)
    import lm_eval

    return lm_eval.simple_evaluate(
        model="hf",
        model_args=model_args,
        tasks=tasks,
        num_fewshot=num_fewshot,
        limit=limit,
        batch_size=batch_size,
        device=device,
        log_samples=True,
    )
