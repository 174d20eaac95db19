"""The reference, lm-evaluation-harness, built in-process on the same data mirror as ours, for
tests that compare prompts and per-document scores with its ConfigurableTask.

Only the task folders a test names are indexed (not lm-eval's 14,000 YAML files), and
`datasets.load_dataset` is routed to the mirror only while a test holds `lmeval_mirror`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def lm_eval_tasks_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks"


@contextmanager
def lmeval_mirror(data_dir: Path) -> Iterator[None]:
    """datasets.load_dataset served from the mirror (benchmarks/lmeval_offline.py), then restored."""
    import datasets

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from lmeval_offline import install_mirror
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    original = datasets.load_dataset
    install_mirror(data_dir)
    try:
        yield
    finally:
        datasets.load_dataset = original


def lm_task(name: str, folders: list[Path], num_fewshot: int | None, seed: int = 1234) -> Any:
    """lm-eval's task object as simple_evaluate prepares it (num_fewshot rule, fewshot seed)."""
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm-eval").setLevel(logging.ERROR)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    manager = TaskManager(include_path=[str(f) for f in folders], include_defaults=False)
    task = manager.load([name])["tasks"][name]
    if num_fewshot is not None and task.get_config("num_fewshot") != 0:
        task.set_config("num_fewshot", num_fewshot)
    elif task.get_config("num_fewshot") is None:
        task.set_config("num_fewshot", 0)
    task.set_fewshot_seed(seed)
    return task


def hf_chat_template(tokenizer: Any) -> Callable[..., str]:
    """lm-eval's HFLM.apply_chat_template, bound to a tokenizer without loading a model."""
    from lm_eval.models.huggingface import HFLM

    fake = SimpleNamespace(tokenizer=tokenizer, chat_template_args={})
    return lambda history, add_generation_prompt=True: HFLM.apply_chat_template(fake, history, add_generation_prompt)


def lm_requests(task: Any, limit: int, **build_kwargs: Any) -> dict[int, list[tuple]]:
    """doc_id -> the arguments of its instances, in order, as lm-eval builds them."""
    task.build_all_requests(limit=limit, **build_kwargs)
    by_doc: dict[int, list[Any]] = {}
    for inst in task.instances:
        by_doc.setdefault(inst.doc_id, []).append(inst)
    return {d: [_plain_args(i.args) for i in sorted(v, key=lambda x: x.idx)] for d, v in by_doc.items()}


def _plain_args(args: tuple) -> tuple:
    if len(args) == 2 and isinstance(args[1], dict):
        return (args[0], dict(args[1]))
    return tuple(args)
