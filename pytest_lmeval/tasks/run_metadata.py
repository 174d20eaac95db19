"""The run's task metadata: what lm-eval's `--metadata` and `--model_args` add to every task.

lm-eval merges the model's arguments and `--metadata` into each task's `metadata` at run time
(the run's values win over the task file's); loaders that build their documents themselves read
it there: RULER and needle-in-a-haystack take the tokenizer (`pretrained` or `tokenizer`) and the
context lengths (`max_seq_lengths`) from it. Here `--task-metadata` is that option, and the Run
opens this scope with the model's arguments and it merged, so a second run in the same process
starts with its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

_METADATA: ContextVar[Mapping[str, Any] | None] = ContextVar("lmeval_task_metadata", default=None)


@contextlib.contextmanager
def task_metadata(values: Mapping[str, Any]) -> Iterator[None]:
    token = _METADATA.set(dict(values))
    try:
        yield
    finally:
        _METADATA.reset(token)


def with_run_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A task's own metadata with the run's merged over it, as lm-eval's task factory merges it."""
    return {**metadata, **(_METADATA.get() or {})}
