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

Everything not exported here is internal.
"""

from .tasks.benchmark import Doc, benchmark
from .tasks.config import GroupConfig as Group
from .tasks.config import TaskConfig as Task
from .tasks.declare import generate, group, loglikelihood, multiple_choice, multiple_input, rolling
from .tasks.declare_data import Data, FewShot, fewshot, hub, local, rows
from .tasks.declare_metrics import Metric, judge, metric, regex

__all__ = [
    "Data",
    "Doc",
    "FewShot",
    "Group",
    "Metric",
    "Task",
    "benchmark",
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
