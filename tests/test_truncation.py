"""A prompt longer than the model's context is cut (its start dropped, as lm-eval does): each
cut document says so in its record and sample lines, results.json counts them per task, and
the terminal names the task and how many of its documents were cut."""

from __future__ import annotations

from pathlib import Path

import pytest
from quiz_project import read_json, read_jsonl, write_quiz, write_rows

pytest.importorskip("transformers")


def test_cut_prompts_are_counted_in_the_terminal_results_and_samples(pytester: pytest.Pytester, tiny_model: Path):
    root = write_quiz(pytester.path)
    rows = [
        {"question": "Is water wet? " + "Very long preamble. " * 40, "choices": ["no", "yes"], "label": 0},
        {"question": "Short one?", "choices": ["no", "yes"], "label": 1},
    ]
    write_rows(root / "data" / "local" / "quiz" / "a" / "test.jsonl", rows)
    res = pytester.runpytest(
        "-p", "no:cacheprovider", "--no-cache", "--tasks", "quiz_a", "--model", f"hf:{tiny_model}",
        "--model-args", "max_length=48,dtype=float32", "--device", "cpu", "--data-dir", "data",
        "--output-path", "out", "--log-samples",
    )  # fmt: skip
    assert res.ret == 0, res.stdout.str()[-3000:]
    counted = read_json(root / "out" / "results.json")["truncated"]["quiz_a"]
    line = [x for x in res.outlines if x.startswith("lmeval truncation:")]
    longest = counted["longest_tokens"]
    assert line == [
        f"lmeval truncation: quiz_a: 1 of 2 documents cut to 49 tokens (longest {longest}), their start dropped"
    ]  # noqa: E501
    assert counted["documents"] == 1 and counted["kept_tokens"] == 49 and counted["side"] == "left"
    assert counted["longest_tokens"] > 49
    samples = {s["doc_id"]: s for s in read_jsonl(root / "out" / "samples" / "quiz_a.jsonl")}
    assert [c["kept"] for c in samples[0]["truncated"]] == [49, 49]
    assert "truncated" not in samples[1]
