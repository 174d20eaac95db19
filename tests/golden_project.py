"""A benchmark project for gate, baseline and report tests in which the test decides, document by
document, whether the `dummy:` model gets it right, in a first run (the baseline) and a second.

Two multiple-choice tasks, `golden_a` and `golden_b`, and the group `golden` over them
(weighted by size). Each document holds two lists of choices, `a` and `b`, and the task YAML
reads one of them (`variant`): the same documents (same doc_hash) scored by what acts as two
different models. The dummy picks the shortest choice for `acc` (the model's answer) and the
longest for `acc_norm`; the longest is never the label here, so `acc_norm` is 0 throughout and
only `acc` moves between variants.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmark_source import benchmark_source  # noqa: E402

TASK_YAML = """\
task: {name}
dataset_path: local/golden
dataset_name: {subset}
output_type: multiple_choice
test_split: test
doc_to_text: "Q: {{{{q}}}}\\nA:"
doc_to_choice: "{{{{{variant}}}}}"
doc_to_target: label
metric_list:
  - metric: acc
  - metric: acc_norm
"""

GROUP_YAML = """\
group: golden
task: [golden_a, golden_b]
aggregate_metric_list:
  - metric: acc
    weight_by_size: true
  - metric: acc_norm
    weight_by_size: true
"""

TEST_FILE = benchmark_source("golden", "golden")

# (right in the first run, right in the second) per document
Outcomes = list[tuple[bool, bool]]


def choices(label: int, right: bool) -> list[str]:
    """Four choices: the shortest (the dummy's acc pick: "y" at the label when `right`, else "n"
    next to it); the longest (acc_norm's pick) two places on, never the label."""
    out = [f"x{k}x" for k in range(4)]
    out[label if right else (label + 1) % 4] = "y" if right else "n"
    out[(label + 2) % 4] = "longest"
    return out


def rows(outcomes: Outcomes) -> list[dict]:
    return [
        {"q": f"question {i}", "a": choices(i % 4, first), "b": choices(i % 4, second), "label": i % 4}
        for i, (first, second) in enumerate(outcomes)
    ]


def write_project(root: Path, a: Outcomes, b: Outcomes) -> None:
    """evals/golden/ with both tasks, the group and the test file; data/ with their documents."""
    folder = root / "evals" / "golden"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "_golden.yaml").write_text(GROUP_YAML)
    (folder / "test_golden.py").write_text(TEST_FILE)
    for subset, outcomes in (("a", a), ("b", b)):
        path = root / "data" / "local" / "golden" / subset / "test.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows(outcomes)))
    use_variant(root, "a")
    (root / "pytest.ini").write_text("[pytest]\nlmeval_evals_dir = evals\n")


def use_variant(root: Path, variant: str) -> None:
    """Point both tasks at the documents' `a` (first run) or `b` (second run) choices."""
    for subset in ("a", "b"):
        yaml = TASK_YAML.format(name=f"golden_{subset}", subset=subset, variant=variant)
        (root / "evals" / "golden" / f"golden_{subset}.yaml").write_text(yaml)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """An in-process run of the project with the dummy model, without the response cache."""
    return pytester.runpytest(
        "evals", "-p", "no:cacheprovider", "--no-cache", "--model", "dummy:m", "--data-dir", "data", *args
    )


def accuracy(outcomes: Outcomes, which: int) -> float:
    return sum(o[which] for o in outcomes) / len(outcomes)


def flipped(task: str, outcomes: Outcomes) -> tuple[list[str], list[str]]:
    """Ids of the documents lost (right, then wrong) and gained (wrong, then right)."""
    lost = [f"{task}-{i}" for i, (x, y) in enumerate(outcomes) if x and not y]
    gained = [f"{task}-{i}" for i, (x, y) in enumerate(outcomes) if y and not x]
    return lost, gained


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def has_lines(result: pytest.RunResult, *texts: str) -> None:
    """Each text is in the output (plain substrings: gate names hold brackets)."""
    out = result.stdout.str()
    for text in texts:
        assert text in out, f"{text!r} not in output:\n{out[-4000:]}"
