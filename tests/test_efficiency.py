"""What requests cost (pytest_lmeval/efficiency.py): a backend call's time divided over its
requests by their tokens, per document in samples, per task in results.json, the terminal and
report.html's latency distribution, labelled as measurements of the run, not model metrics."""

from __future__ import annotations

import re

import pytest
from quiz_project import read_json, read_jsonl, write_quiz

from pytest_lmeval import efficiency
from pytest_lmeval.requests import Request


class Words:
    """A backend whose tokens are words."""

    def tok_encode(self, text: str) -> list[str]:
        return text.split()


def test_a_calls_time_is_divided_by_tokens() -> None:
    a = Request.loglikelihood("one two three", " four")  # 4 tokens
    b = Request.loglikelihood("one", " two")  # 2 tokens
    g = Request.generate_until("one two", {"until": ["\n"]})  # 2 in, 4 generated
    costs = efficiency.share(Words(), [a, b, g], [(-1.0, True), (-2.0, False), "x y z w"], 1.2)
    assert costs[a] == efficiency.Cost(1.2 * 4 / 12, 4, None)
    assert costs[b] == efficiency.Cost(1.2 * 2 / 12, 2, None)
    assert costs[g] == efficiency.Cost(1.2 * 6 / 12, 2, 4)
    # without a tokenizer: by characters
    plain = efficiency.share(object(), [a, b], [(-1.0, True), (-2.0, False)], 1.0)
    assert plain[a].seconds == pytest.approx(18 / 25) and plain[a].input_tokens is None
    doc = efficiency.of_document([a, g, b], {a: costs[a], g: costs[g]})
    assert doc == {
        "request_seconds": [0.4, 0.6, None],
        "seconds": 1.0,
        "cached_requests": 1,
        "input_tokens": 6,
        "generated_tokens": 4,
    }


def test_a_run_reports_its_costs_as_measurements(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    args = ("evals", "--model", "dummy:d", "--model-args", "delay=0.01", "--data-dir", "data", "--log-samples")
    res = pytester.runpytest("-p", "no:cacheprovider", *args, "--cache-dir", "cache", "--output-path", "out")
    assert res.ret == 0
    doc = read_json(pytester.path / "out" / "results.json")
    quiz_a = doc["efficiency"]["quiz_a"]
    assert "not metrics of the model" in quiz_a["note"]
    assert (quiz_a["documents"], quiz_a["requests"], quiz_a["computed_requests"]) == (5, 15, 15)
    # the dummy sleeps 0.01 s per request: the 21 requests' shares add up to at least that
    total = quiz_a["seconds"] + doc["efficiency"]["quiz_b"]["seconds"]
    assert total >= 21 * 0.01
    per = quiz_a["seconds_per_request"]
    assert per["median"] <= per["p90"] <= per["max"] and "input_tokens" not in quiz_a  # the dummy has no tokenizer
    samples = read_jsonl(pytester.path / "out" / "samples" / "quiz_a.jsonl")
    assert [len(s["efficiency"]["request_seconds"]) for s in samples] == [3, 3, 3, 3, 3]
    assert sum(s["efficiency"]["seconds"] for s in samples) == pytest.approx(quiz_a["seconds"], abs=1e-5)
    assert any(line.startswith("lmeval efficiency (measurements of this run") for line in res.outlines)
    assert any(re.match(r"lmeval efficiency: quiz_a: 15 of 15 requests computed in", line) for line in res.outlines)
    page = (pytester.path / "out" / "report.html").read_text()
    assert "not metrics of the model" in page
    chart = re.search(r'<svg[^>]*aria-label="quiz_a: time per request".*?</svg>', page, re.S)
    assert chart and sum(int(n) for n in re.findall(r"<title>(\d+) requests", chart.group(0))) == 15
    # answered from the cache, nothing was computed this run
    again = pytester.runpytest("-p", "no:cacheprovider", *args, "--cache-dir", "cache", "--output-path", "again")
    assert again.ret == 0
    cached = read_json(pytester.path / "again" / "results.json")["efficiency"]["quiz_a"]
    assert (cached["computed_requests"], cached["seconds"]) == (0, 0)
    line = read_jsonl(pytester.path / "again" / "samples" / "quiz_a.jsonl")[0]["efficiency"]
    assert line == {"request_seconds": [None, None, None], "seconds": 0, "cached_requests": 3}
