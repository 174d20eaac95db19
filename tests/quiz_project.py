"""A small benchmark project for pytester runs: two multiple-choice tasks (`quiz_a`, `quiz_b`) and
the group `quiz` over them, with data whose scores under the `dummy:` model are worked out by
hand here.

The dummy's rule (pytest_lmeval/models/dummy.py): log-likelihood = -len(continuation), and the
continuation is the target delimiter " " plus the choice. So `acc` picks the shortest choice,
and `acc_norm` (log-likelihood over the choice's length, -1 - 1/len) the longest; ties go to the
first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmark_source import benchmark_source  # noqa: E402

TASK_YAML = """\
task: {name}
dataset_path: local/quiz
dataset_name: {subset}
output_type: multiple_choice
test_split: test
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
  - metric: acc_norm
metadata:
  version: {version}
"""

GROUP_YAML = """\
group: quiz
task: [quiz_a, quiz_b]
aggregate_metric_list:
  - metric: acc
    weight_by_size: true
  - metric: acc_norm
    weight_by_size: true
metadata:
  version: 3
"""

TEST_FILE = benchmark_source("quiz", "quiz")

# (row, acc, acc_norm) with the dummy model, by the rule above.
QUIZ_A = [
    ({"question": "Is water wet?", "choices": ["no", "yes", "maybe"], "label": 0}, 1.0, 0.0),  # no | maybe
    ({"question": "Which pulls a plough?", "choices": ["cat", "horse", "ox"], "label": 2}, 1.0, 0.0),  # ox | horse
    ({"question": "Third Greek letter?", "choices": ["alpha", "be", "gamma!"], "label": 2}, 0.0, 1.0),  # be | gamma!
    ({"question": "Colour of grass?", "choices": ["red", "green", "blue"], "label": 1}, 0.0, 1.0),  # red | green
    ({"question": "First letter?", "choices": ["a", "bb", "ccc"], "label": 0}, 1.0, 0.0),  # a | ccc
]
QUIZ_B = [
    ({"question": "Seen at night?", "choices": ["sun", "moon"], "label": 1}, 0.0, 1.0),  # sun | moon
    ({"question": "Opposite of down?", "choices": ["up", "down"], "label": 0}, 1.0, 0.0),  # up | down
    ({"question": "Opposite of left?", "choices": ["left", "right"], "label": 1}, 0.0, 1.0),  # left | right
]
EXPECTED = {"quiz_a": QUIZ_A, "quiz_b": QUIZ_B}


def write_quiz(root: Path) -> Path:
    """The project under `root`: evals/quiz/{quiz_a,quiz_b,_quiz}.yaml + test_quiz.py, the data
    mirror under data/, and a pytest.ini naming evals/ as the benchmark folder."""
    folder = root / "evals" / "quiz"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "quiz_a.yaml").write_text(TASK_YAML.format(name="quiz_a", subset="a", version="2.0"))
    (folder / "quiz_b.yaml").write_text(TASK_YAML.format(name="quiz_b", subset="b", version="1.0"))
    (folder / "_quiz.yaml").write_text(GROUP_YAML)
    (folder / "test_quiz.py").write_text(TEST_FILE)
    for subset, rows in (("a", QUIZ_A), ("b", QUIZ_B)):
        write_rows(root / "data" / "local" / "quiz" / subset / "test.jsonl", [r for r, _, _ in rows])
    (root / "pytest.ini").write_text("[pytest]\nlmeval_evals_dir = evals\n")
    return root


def write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """An in-process pytest run in the project, without the response cache."""
    return pytester.runpytest("-p", "no:cacheprovider", "--no-cache", *args)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def table_rows(result: pytest.RunResult) -> list[list[str]]:
    """The cells of every row of the terminal's results tables (header rows left out)."""
    rows = []
    for line in result.outlines:
        if not line.startswith("|") or line.startswith("|Tasks") or line.startswith("|--"):
            continue
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def error_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.errlines if line.startswith("ERROR:")]
