"""Exact scores of a whole pytest run on fixed inputs: the `dummy:` model's known answers on the
quiz project (tests/quiz_project.py), checked where a user reads them: the terminal table,
results.json (lm-eval's schema), samples/<task>.jsonl and the JUnit XML properties. Task
stderr and the group's size-weighted value and pooled stderr are compared with lm-eval's own
functions on the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
import xml.etree.ElementTree as ET

import pytest
from quiz_project import EXPECTED, read_json, read_jsonl, run, table_rows, write_quiz

RUN = ("evals", "--model", "dummy:d", "--data-dir", "data", "--output-path", "out")


def _column(task: str, metric: str) -> list[float]:
    return [acc if metric == "acc" else norm for _, acc, norm in EXPECTED[task]]


def _fmt(x: float) -> str:
    return f"{x:.4f}"


@pytest.fixture
def lm_metrics():
    """lm-eval's own metric functions, the reference for stderr and group aggregation."""
    return pytest.importorskip("lm_eval.api.metrics")


@pytest.fixture
def full_run(pytester: pytest.Pytester) -> pytest.RunResult:
    write_quiz(pytester.path)
    return run(pytester, *RUN, "--log-samples", "--junitxml", "junit.xml")


def test_task_scores_and_stderr(full_run: pytest.RunResult, pytester: pytest.Pytester, lm_metrics) -> None:
    assert full_run.ret == 0
    full_run.assert_outcomes(passed=8)
    doc = read_json(pytester.path / "out" / "results.json")
    rows = {r[0]: r for r in table_rows(full_run) if r[0]}
    for task in ("quiz_a", "quiz_b"):
        res = doc["results"][task]
        for metric in ("acc", "acc_norm"):
            values = _column(task, metric)
            assert res[f"{metric},none"] == pytest.approx(sum(values) / len(values), abs=1e-12)
            assert res[f"{metric}_stderr,none"] == pytest.approx(lm_metrics.mean_stderr(values), abs=1e-12)
        row = rows[f"- {task}"]  # the first row of the task's block: acc
        assert row[2:8] == ["none", "0", "acc", "↑", _fmt(res["acc,none"]), "±"]
        assert row[8] == _fmt(res["acc_stderr,none"])
    assert doc["results"]["quiz_a"]["acc,none"] == 0.6  # 3 of 5, worked out by hand
    assert doc["results"]["quiz_b"]["acc_norm,none"] == pytest.approx(2 / 3)


def test_group_weighted_by_size_with_pooled_stderr(
    full_run: pytest.RunResult, pytester: pytest.Pytester, lm_metrics
) -> None:
    doc = read_json(pytester.path / "out" / "results.json")
    sizes = [len(EXPECTED["quiz_a"]), len(EXPECTED["quiz_b"])]
    for metric in ("acc", "acc_norm"):
        values = [doc["results"][t][f"{metric},none"] for t in ("quiz_a", "quiz_b")]
        stderrs = [doc["results"][t][f"{metric}_stderr,none"] for t in ("quiz_a", "quiz_b")]
        want = lm_metrics.aggregate_subtask_metrics(values, sizes, weight_by_size=True)
        want_se = float(lm_metrics.pooled_sample_stderr(stderrs, sizes))
        group = doc["groups"]["quiz"]
        assert group[f"{metric},none"] == pytest.approx(want, abs=1e-12)
        assert group[f"{metric}_stderr,none"] == pytest.approx(want_se, abs=1e-12)
        assert doc["results"]["quiz"][f"{metric},none"] == group[f"{metric},none"]
        # weighted by size is not the plain mean of the two tasks
        assert want != pytest.approx(sum(values) / 2)
    assert doc["groups"]["quiz"]["acc,none"] == 0.5  # (3 + 1) right answers of 8
    assert list(doc["results"]) == ["quiz", "quiz_a", "quiz_b"]
    assert doc["results"]["quiz_a"]["alias"] == " - quiz_a"
    assert "partial" not in doc["groups"]["quiz"]
    group_rows = [r for r in table_rows(full_run) if r[0] == "quiz"]
    assert len(group_rows) == 2  # in the results table, and in the groups table below it
    assert group_rows[0][4:9] == ["acc", "↑", "0.5000", "±", _fmt(doc["groups"]["quiz"]["acc_stderr,none"])]


def test_results_json_schema(full_run: pytest.RunResult, pytester: pytest.Pytester) -> None:
    doc = read_json(pytester.path / "out" / "results.json")
    for key in (
        "results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better",
        "n-samples", "config", "model_name", "model_info", "package_versions", "date",
    ):  # fmt: skip
        assert key in doc, key
    assert doc["group_subtasks"] == {"quiz": ["quiz_a", "quiz_b"], "quiz_a": [], "quiz_b": []}
    assert doc["n-samples"] == {"quiz_a": {"original": 5, "effective": 5}, "quiz_b": {"original": 3, "effective": 3}}
    assert doc["n-shot"] == {"quiz_a": 0, "quiz_b": 0}
    assert float(doc["versions"]["quiz_a"]) == 2.0
    assert float(doc["versions"]["quiz_b"]) == 1.0
    assert float(doc["versions"]["quiz"]) == 3.0
    calibration = {"ece_10_bin": False, "selective_acc@10": True, "selective_cov_acc_area": True}
    assert doc["higher_is_better"]["quiz_a"] == {"acc": True, "acc_norm": True, **calibration}
    assert doc["higher_is_better"]["quiz"] == {"acc": True, "acc_norm": True, **calibration}
    config = doc["configs"]["quiz_a"]
    assert config["task"] == "quiz_a"
    assert config["dataset_path"] == "local/quiz"
    assert config["output_type"] == "multiple_choice"
    assert config["doc_to_text"] == "Q: {{question}}\nA:"
    assert config["num_fewshot"] == 0
    assert doc["config"]["model"] == "dummy"
    assert doc["config"]["model_name"] == "d" and doc["config"]["model_path"] == "d"
    assert doc["model_name"] == "dummy:d"


def test_samples_in_lm_eval_schema(full_run: pytest.RunResult, pytester: pytest.Pytester) -> None:
    samples = read_jsonl(pytester.path / "out" / "samples" / "quiz_a.jsonl")
    assert [s["doc_id"] for s in samples] == list(range(5))
    for sample, (row, acc, norm) in zip(samples, EXPECTED["quiz_a"], strict=True):
        assert set(sample) == {
            "doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter", "metrics",
            "doc_hash", "prompt_hash", "target_hash", "acc", "acc_norm", "confidence", "efficiency",
        }  # fmt: skip
        prompt = f"Q: {row['question']}\nA:"
        assert sample["doc"] == row
        assert sample["target"] == str(row["label"])
        assert sample["arguments"] == {
            f"gen_args_{i}": {"arg_0": prompt, "arg_1": f" {c}"} for i, c in enumerate(row["choices"])
        }
        answers = [[str(-float(len(c) + 1)), "False"] for c in row["choices"]]
        assert sample["resps"] == [[a] for a in answers]
        assert sample["filtered_resps"] == answers
        assert (sample["filter"], sample["metrics"]) == ("none", ["acc", "acc_norm"])
        assert (sample["acc"], sample["acc_norm"]) == (acc, norm)
        assert sample["prompt_hash"] == hashlib.sha256(prompt.encode()).hexdigest()
        assert sample["target_hash"] == hashlib.sha256(str(row["label"]).encode()).hexdigest()
        doc_text = json.dumps(row, indent=2, ensure_ascii=False)
        assert sample["doc_hash"] == hashlib.sha256(doc_text.encode()).hexdigest()
    assert len(read_jsonl(pytester.path / "out" / "samples" / "quiz_b.jsonl")) == 3


def test_junit_properties_carry_each_documents_scores(full_run: pytest.RunResult, pytester: pytest.Pytester) -> None:
    tree = ET.parse(pytester.path / "junit.xml")
    seen = {}
    for case in tree.iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        seen[case.get("name")] = (float(props["acc"]), float(props["acc_norm"]))
    for task, rows in EXPECTED.items():
        for i, (_, acc, norm) in enumerate(rows):
            assert seen[f"test_quiz[{task}-{i}]"] == (acc, norm)
    assert len(seen) == 8


def test_partial_group_after_k_says_so(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    result = run(pytester, *RUN, "-k", "not quiz_b")
    assert result.ret == 0
    result.assert_outcomes(passed=5, deselected=3)
    result.stdout.fnmatch_lines(["note: group quiz is partial: 1 of its tasks were not run (quiz_b)"])
    assert [r[0] for r in table_rows(result) if r[0].startswith("quiz")] == ["quiz (partial)"] * 2
    doc = read_json(pytester.path / "out" / "results.json")
    group = doc["groups"]["quiz"]
    assert group["partial"] is True
    assert group["missing_subtasks"] == ["quiz_b"]
    assert group["acc,none"] == doc["results"]["quiz_a"]["acc,none"] == 0.6
    assert group["acc_stderr,none"] == pytest.approx(doc["results"]["quiz_a"]["acc_stderr,none"])
    assert "quiz_b" not in doc["results"]


def test_limit_fraction_takes_the_first_documents(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    result = run(pytester, *RUN, "--limit", "0.5")  # ceil(5 * 0.5) = 3 and ceil(3 * 0.5) = 2, as lm-eval
    assert result.ret == 0
    result.assert_outcomes(passed=5)
    doc = read_json(pytester.path / "out" / "results.json")
    assert doc["n-samples"] == {"quiz_a": {"original": 5, "effective": 3}, "quiz_b": {"original": 3, "effective": 2}}
    assert doc["results"]["quiz_a"]["acc,none"] == pytest.approx(2 / 3)  # documents 0-2: right, right, wrong
    assert doc["results"]["quiz_b"]["acc,none"] == 0.5
    assert doc["config"]["limit"] == 0.5
    assert math.isclose(doc["groups"]["quiz"]["acc,none"], 3 / 5)
