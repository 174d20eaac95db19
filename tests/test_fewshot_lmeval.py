"""Few-shot prompts equal lm-eval's: for the issue's multiple-choice benchmarks, lm-eval 0.4.13's
own ConfigurableTask (its YAML from the installed package, data from the shared mirror through a
patched `datasets.load_dataset`) builds `fewshot_context` for the first documents in order after
`set_fewshot_seed(1234)`, as its evaluator does, and our Task's `context(i)` must be the same
string: description, the sampled examples (random sampler for ARC and OpenBookQA, first_n from
the dev split for MMLU), delimiters and the question. No model runs.
"""

from __future__ import annotations

import pytest
from lmeval_ref import lm_eval_tasks_dir, lm_task, lmeval_mirror
from mirror import LibraryTasks, shared_mirror

from pytest_lmeval.tasks.registry import Registry
from pytest_lmeval.tasks.task import Task

pytest.importorskip("lm_eval")

N_DOCS = 20
CASES = [
    # (task, lm-eval's folder, n-shot, how each example's answer line starts)
    ("arc_easy", "arc", 3, "Answer:"),
    ("arc_challenge", "arc", 5, "Answer:"),
    ("mmlu_anatomy", "mmlu/default", 5, "Answer:"),
    ("mmlu_abstract_algebra", "mmlu/default", 5, "Answer:"),
    ("openbookqa", "openbookqa", 4, None),
    ("piqa", "piqa", 0, "Answer:"),
    ("boolq", "super_glue/boolq", 0, "Answer:"),
]


@pytest.fixture(scope="module")
def registry() -> LibraryTasks:
    return LibraryTasks()


@pytest.mark.parametrize(("name", "folder", "shots", "answer"), CASES, ids=[f"{c[0]}-{c[2]}shot" for c in CASES])
def test_fewshot_context_equals_lm_eval(registry: Registry, name: str, folder: str, shots: int, answer) -> None:
    data = shared_mirror()
    if data is None:
        pytest.skip("the shared benchmark mirror is not available (set LMEVAL_DATA_DIR)")
    ours = Task(registry.tasks[name], data_dir=data, num_fewshot=shots, limit=N_DOCS, seed=1234)
    with lmeval_mirror(data):
        theirs = lm_task(name, [lm_eval_tasks_dir() / folder], shots, seed=1234)
        docs = list(theirs.eval_docs)[:N_DOCS]
        contexts = [theirs.fewshot_context(doc, shots) for doc in docs]
    assert len(ours.docs) == len(docs) == N_DOCS
    assert ours.docs == [dict(d) for d in docs]
    for i, context in enumerate(contexts):
        assert ours.context(i) == context, f"{name} document {i}"
    if answer is not None:  # the examples are really there: k answered questions, then the open one
        assert all(c.count(answer) == shots + 1 for c in contexts)
    if name.startswith("mmlu_"):
        subject = name.removeprefix("mmlu_").replace("_", " ")
        assert contexts[0].startswith(
            f"The following are multiple choice questions (with answers) about {subject}.\n\n"
        )
