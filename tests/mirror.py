"""Test data: the shared benchmark mirror (../shared/data, or LMEVAL_DATA_DIR) merged with the
small fixtures in tests/data/mirror, which hold, in the hub data sets' own columns, what the
shared mirror lacks (GSM8K, a few BBH subtasks, WikiText pages, Winogrande and HellaSwag train
rows for few-shot runs). Fixture rows are written for these tests, not copied from the data sets.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "data" / "mirror"


def shared_mirror() -> Path | None:
    env = os.environ.get("LMEVAL_DATA_DIR")
    path = Path(env) if env else ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


def merged_mirror(target: Path, *, shared: bool = True) -> Path:
    """A mirror folder of symlinks: every split file of the shared mirror and of the fixtures
    (a fixture file wins where both have one)."""
    roots = [r for r in (shared_mirror() if shared else None, FIXTURES) if r is not None]
    for root in roots:
        for split in root.rglob("*.jsonl"):
            link = target / split.relative_to(root)
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(split)
    return target


class LibraryTasks:
    """Task configs by name: our declarations in evals/, and lm-eval's catalogue for what evals/
    does not define (bbh: the same YAML read by both harnesses). `tasks[name]` reads like a
    registry's, with the overrides of nothing."""

    def __init__(self) -> None:
        from pytest_lmeval.tasks.registry import Registry

        self.registry = Registry.scan([ROOT / "evals"], lm_eval_catalogue=True)

    @property
    def tasks(self) -> LibraryTasks:
        return self

    def __getitem__(self, name: str):
        return self.registry.configs_for([name])[name]
