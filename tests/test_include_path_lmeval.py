"""A folder of lm-eval task YAML (copies of a few from the lm-eval package, both also defined
in evals/ and marked as replacing those, plus a custom generative task with `!function`
helpers) runs under --include-path with the scores lm-eval itself gives on the same tiny
model and data: every log-likelihood (1e-4), every generated text, every metric (4 decimals).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lmeval_ref import lm_eval_tasks_dir, lmeval_mirror  # noqa: E402
from mirror import merged_mirror, shared_mirror  # noqa: E402
from tiny_model import build_tiny_model  # noqa: E402

pytest.importorskip("lm_eval")
pytest.importorskip("datasets")  # imported before pytester's in-process runs (see test_generation_plugin)

CUSTOM = """\
task: gsm8k_first_line
dataset_path: openai/gsm8k
dataset_name: main
output_type: generate_until
training_split: train
test_split: test
num_fewshot: 2
process_docs: !function helpers.first_line
doc_to_text: "Problem: {{question}}\\nSolution:"
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["\\n", "Problem:"]
  max_gen_toks: 6
  do_sample: false
filter_list:
  - name: last-number
    filter:
      - function: regex
        group_select: -1
        regex_pattern: "(-?[0-9]+)"
      - function: take_first
  - name: raw
    filter:
      - function: !function helpers.Squash
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
"""
HELPERS = """\
def first_line(dataset):
    return dataset.map(lambda d: {"answer": d["answer"].split("\\n")[0]})


class Squash:
    def __init__(self, **kwargs):
        pass

    def apply(self, resps, docs):
        return [[" ".join(r.split()) for r in rs] for rs in resps]
"""
TASKS = ["truthfulqa_mc1", "lambada_openai", "gsm8k_first_line"]
LIMIT = 4
# the copies replace the library's tasks of the same names, and say so (lm-eval reads the key too)
OVERRIDES = "metadata:\n  override: true\n"


def _overriding(text: str) -> str:
    assert text.count("metadata:\n") == 1
    return text.replace("metadata:\n", OVERRIDES)


@pytest.fixture(scope="module")
def include_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mytasks")
    for family, files in {"truthfulqa": ["truthfulqa_mc1.yaml"], "lambada": ["lambada_openai.yaml"]}.items():
        (folder / family).mkdir()
        for name in files:
            (folder / family / name).write_text(_overriding((lm_eval_tasks_dir() / family / name).read_text()))
    (folder / "custom").mkdir()
    (folder / "custom" / "gsm8k_first_line.yaml").write_text(CUSTOM)
    (folder / "custom" / "helpers.py").write_text(HELPERS)
    return folder


def test_include_path_scores_equal_lm_eval(pytester: pytest.Pytester, tmp_path: Path, include_dir: Path) -> None:
    if shared_mirror() is None:
        pytest.skip("needs the shared benchmark mirror")
    mirror = merged_mirror(tmp_path / "mirror")
    model = build_tiny_model(tmp_path / "tiny")
    (pytester.path / "evals" / "lambada").mkdir(parents=True)  # a same-named task the include path overrides
    (pytester.path / "evals" / "lambada" / "lambada_openai.yaml").write_text(
        _overriding((lm_eval_tasks_dir() / "lambada" / "lambada_openai.yaml").read_text()).replace(
            'doc_to_text: "', 'doc_to_text: "OVERRIDDEN '
        )
    )
    (pytester.path / "pytest.ini").write_text("[pytest]\nlmeval_evals_dir = evals\n")
    result = pytester.runpytest(
        "evals", "-p", "no:cacheprovider", "--no-cache", "--include-path", str(include_dir),
        "--tasks", ",".join(TASKS), "--limit", str(LIMIT), "--model", f"hf:{model}",
        "--model-args", "dtype=float32", "--device", "cpu", "--data-dir", str(mirror),
        "--output-path", "out", "--log-samples",
    )  # fmt: skip
    assert result.ret == 0, "\n".join(result.outlines[-30:])
    result.assert_outcomes(passed=LIMIT * len(TASKS))
    ours = json.loads((pytester.path / "out" / "results.json").read_text())["results"]
    samples = {
        t: [json.loads(line) for line in (pytester.path / "out" / "samples" / f"{t}.jsonl").read_text().splitlines()]
        for t in TASKS
    }

    import lm_eval
    from lm_eval.tasks import TaskManager

    with lmeval_mirror(mirror):
        ref = lm_eval.simple_evaluate(
            model="hf",
            model_args=f"pretrained={model},dtype=float32",
            tasks=TASKS,
            task_manager=TaskManager(include_path=str(include_dir)),
            limit=LIMIT,
            batch_size=1,
            device="cpu",
            log_samples=True,
        )
    for task in TASKS:
        for key, value in ref["results"][task].items():
            if "," in key and "_stderr" not in key:
                assert round(ours[task][key], 4) == round(value, 4), (task, key)
        mine = {(s["doc_id"], s["filter"]): s for s in samples[task]}
        assert len(mine) == len(ref["samples"][task])
        for theirs in ref["samples"][task]:
            other = mine[(theirs["doc_id"], theirs["filter"])]
            assert other["arguments"]["gen_args_0"]["arg_0"] == theirs["arguments"][0][0]
            for a, b in zip(theirs["resps"], other["resps"], strict=True):
                if isinstance(a[0], str):  # a generation: the same text, filtered the same way
                    assert b == a
                    assert other["filtered_resps"] == theirs["filtered_resps"]
                else:
                    assert float(b[0][0]) == pytest.approx(a[0][0], abs=1e-4)
                    assert b[0][1] == str(a[0][1])
