"""`-n 2` (pytest-xdist) gives the same results as a run without it, and each worker computes
exactly its own contiguous shard of the documents (pytest_lmeval/distribute.py), so no request
is computed twice.

The quiz project's 8 documents (tests/quiz_project.py) split into gw0: quiz_a-0..3 (4 x 3
choices = 12 requests) and gw1: quiz_a-4, quiz_b-0..2 (3 + 3 x 2 = 9 requests).
"""

from __future__ import annotations

import re

import pytest
from quiz_project import read_json, read_jsonl, run, write_quiz

pytest.importorskip("xdist")

ARGS = ("evals", "--data-dir", "data", "--model", "dummy:d", "--log-samples", "-v")
SHARDS = {
    "gw0": ["quiz_a-0", "quiz_a-1", "quiz_a-2", "quiz_a-3"],
    "gw1": ["quiz_a-4", "quiz_b-0", "quiz_b-1", "quiz_b-2"],
}


def _untimed(path) -> list[dict]:
    return [{k: v for k, v in line.items() if k != "efficiency"} for line in read_jsonl(path)]


def test_two_workers_give_the_same_results_each_computing_its_shard(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    single = run(pytester, *ARGS, "--output-path", "one")
    assert single.ret == 0
    double = run(pytester, *ARGS, "--output-path", "two", "-n", "2")
    assert double.ret == 0
    double.assert_outcomes(passed=8)

    one = read_json(pytester.path / "one" / "results.json")
    two = read_json(pytester.path / "two" / "results.json")
    for key in ("results", "groups", "group_subtasks", "n-samples", "n-shot", "versions", "configs"):
        assert two[key] == one[key], key
    for task in ("quiz_a", "quiz_b"):  # all but the time each request took
        assert _untimed(pytester.path / "two" / "samples" / f"{task}.jsonl") == _untimed(
            pytester.path / "one" / "samples" / f"{task}.jsonl"
        )
    assert [r for r in double.outlines if r.startswith("|")] == [r for r in single.outlines if r.startswith("|")]

    ran = {}
    for line in double.outlines:
        if m := re.match(r"\[(gw\d)\] .*PASSED .*test_quiz\[(.+)\]", line):
            ran.setdefault(m.group(1), []).append(m.group(2))
    assert {w: sorted(ids) for w, ids in ran.items()} == SHARDS

    engine = two["engine"]
    assert one["engine"]["computed"] == engine["computed"] == 21
    assert sorted(w["computed"] for w in engine["workers"]) == [9, 12]  # each its shard, nothing twice
    assert sorted(w["requests"] for w in engine["workers"]) == [9, 12]


def test_two_workers_on_a_real_model_match_one_process(pytester: pytest.Pytester, tiny_model) -> None:
    """The same with transformers (the tiny random Llama): each worker loads the model and
    scores only its shard; every document's log-likelihoods equal the single process's (their
    batches differ, so within float rounding) and the metrics are identical."""
    write_quiz(pytester.path)
    args = ("evals", "--data-dir", "data", "--model", f"hf:{tiny_model}", "--device", "cpu", "--log-samples")
    single = run(pytester, *args, "--output-path", "one")
    double = run(pytester, *args, "--output-path", "two", "-n", "2")
    assert single.ret == double.ret == 0
    one = read_json(pytester.path / "one" / "results.json")
    two = read_json(pytester.path / "two" / "results.json")
    calibration = ("ece_10_bin", "selective_")  # from confidences, whose last digits vary with the batch

    def exact(doc: dict) -> dict:
        return {t: {k: v for k, v in e.items() if not k.startswith(calibration)} for t, e in doc["results"].items()}

    assert exact(two) == exact(one)
    for task, entry in one["results"].items():
        for key, value in entry.items():
            if key.startswith(calibration) and "_stderr" not in key:
                assert two["results"][task][key] == pytest.approx(value, abs=1e-4), (task, key)
    for task in ("quiz_a", "quiz_b"):
        a = read_jsonl(pytester.path / "one" / "samples" / f"{task}.jsonl")
        b = read_jsonl(pytester.path / "two" / "samples" / f"{task}.jsonl")
        for x, y in zip(a, b, strict=True):
            assert [float(r[0]) for r in y["filtered_resps"]] == pytest.approx(
                [float(r[0]) for r in x["filtered_resps"]], abs=1e-5
            )
    assert sorted(w["computed"] for w in two["engine"]["workers"]) == [9, 12]  # nothing twice
    assert two["engine"]["computed"] == one["engine"]["computed"] == 21


def test_workers_on_a_cpu_share_its_cores(monkeypatch) -> None:
    """`-n N` without GPUs: each worker takes its share of the cores (N workers each taking all of
    them ran slower than one process), unless the user set OMP_NUM_THREADS."""
    import os
    from types import SimpleNamespace

    from pytest_lmeval.features.xdist import Xdist, cpu_threads

    assert [cpu_threads(16, n) for n in (1, 2, 3, 32)] == [16, 8, 5, 1]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    worker = SimpleNamespace(workerinput={"workerid": "gw1", "workercount": 2})
    Xdist(worker, sharded=True).share_cpu_threads()
    assert os.environ["OMP_NUM_THREADS"] == "4"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    Xdist(SimpleNamespace(workerinput={"workerid": "gw0", "workercount": 4}), sharded=True).share_cpu_threads()
    assert os.environ["OMP_NUM_THREADS"] == "3"
