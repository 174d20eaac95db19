"""pytest-lmeval: language-model evaluation as a pytest run.

A benchmark file declares its tasks and tests one document per item:

    import pytest_lmeval as lm

    arc_easy = lm.multiple_choice(
        "arc_easy",
        data=lm.hub("allenai/ai2_arc", "ARC-Easy", split="test"),
        prompt="Question: {question}\\nAnswer:",
        choices=lambda doc: doc["choices"]["text"],
        target=lambda doc: doc["choices"]["label"].index(doc["answerKey"]),
    )

    @lm.benchmark(arc_easy)
    def test_arc(doc):
        doc.score()

A run from Python (`evaluate`, returning the run's `RunResult`) and during training (the
transformers `LmevalCallback`):

    result = lm.evaluate("hf:smollm2-135m", tasks=["arc_easy"], limit=50)
    result.metric("arc_easy", "acc")

Everything not exported here is internal.
"""

from typing import TYPE_CHECKING, Any

from .tasks.benchmark import Doc, benchmark
from .tasks.config import GroupConfig as Group
from .tasks.config import TaskConfig as Task
from .tasks.declare import generate, group, loglikelihood, multiple_choice, multiple_input, rolling
from .tasks.declare_data import Data, FewShot, fewshot, hub, local, rows
from .tasks.declare_metrics import Metric, judge, metric, regex

if TYPE_CHECKING:
    from .run.python_api import EvaluationError, evaluate
    from .run.result import RunResult
    from .run.training import LmevalCallback

# imported when first asked for: `import pytest_lmeval` stays light (no pytest run machinery,
# no transformers for the callback)
_LAZY = {
    "evaluate": "pytest_lmeval.run.python_api",
    "EvaluationError": "pytest_lmeval.run.python_api",
    "RunResult": "pytest_lmeval.run.result",
    "LmevalCallback": "pytest_lmeval.run.training",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pytest_lmeval' has no attribute {name!r}")


__all__ = [
    "Data",
    "Doc",
    "EvaluationError",
    "FewShot",
    "Group",
    "LmevalCallback",
    "Metric",
    "RunResult",
    "Task",
    "benchmark",
    "evaluate",
    "fewshot",
    "generate",
    "group",
    "hub",
    "judge",
    "local",
    "loglikelihood",
    "metric",
    "multiple_choice",
    "multiple_input",
    "regex",
    "rolling",
    "rows",
]
