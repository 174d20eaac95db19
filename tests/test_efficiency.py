"""What requests cost (pytest_lmeval/efficiency.py): a backend call's time divided over its
requests by their tokens, per document in samples, per task in results.json, the terminal and
report.html's latency distribution, labelled as measurements of the run, not model metrics."""

from __future__ import annotations

import re

import pytest
from quiz_project import read_json, read_jsonl, write_quiz

from pytest_lmeval.core.requests import Request
from pytest_lmeval.engine import costs as costs_of
from pytest_lmeval.features import efficiency


class Words:
    """A backend whose tokens are words."""

    def tok_encode(self, text: str) -> list[str]:
        return text.split()


def test_a_calls_time_is_divided_by_tokens() -> None:
    a = Request.loglikelihood("one two three", " four")  # 4 tokens
    b = Request.loglikelihood("one", " two")  # 2 tokens
    g = Request.generate_until("one two", {"until": ["\n"]})  # 2 in, 4 generated
    costs = costs_of.share(Words(), [a, b, g], [(-1.0, True), (-2.0, False), "x y z w"], 1.2)
    assert costs[a] == costs_of.Cost(1.2 * 4 / 12, 4, None)
    assert costs[b] == costs_of.Cost(1.2 * 2 / 12, 2, None)
    assert costs[g] == costs_of.Cost(1.2 * 6 / 12, 2, 4)
    # without a tokenizer: by characters
    plain = costs_of.share(object(), [a, b], [(-1.0, True), (-2.0, False)], 1.0)
    assert plain[a].seconds == pytest.approx(18 / 25) and plain[a].input_tokens is None
    doc = efficiency.of_document([a, g, b], {a: costs[a], g: costs[g]})
    assert doc == {
        "request_seconds": [0.4, 0.6, None],
        "seconds": 1.0,
        "cached_requests": 1,
        "first_token_seconds": [None, None, None],  # a generation request among them; Words does not tell it
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


class Timed(Words):
    """A backend that tells each generation request's time to first token, as the HF one does."""

    def __init__(self, first: dict[Request, float]) -> None:
        self.first_token_seconds = first


def test_time_to_first_token_travels_per_request_and_is_summarised_per_task() -> None:
    g1 = Request.generate_until("one two", {"until": ["\n"]})
    g2 = Request.generate_until("three", {"until": ["\n"]})
    costs = costs_of.share(Timed({g1: 0.25}), [g1, g2], ["x y", "z"], 1.0)
    assert (costs[g1].first_token_seconds, costs[g2].first_token_seconds) == (0.25, None)  # g2: not told
    one = efficiency.of_document([g1], costs)
    assert one["first_token_seconds"] == [0.25] and one["request_seconds"] == [round(4 / 6, 6)]
    cached = efficiency.of_document([g2], {})
    assert cached["first_token_seconds"] == [None]
    assert "first_token_seconds" not in efficiency.of_document([Request.loglikelihood("a", " b")], {})
    summary = efficiency.summary([{"efficiency": one}, {"efficiency": efficiency.of_document([g2], costs)}])
    assert summary["first_token_seconds"] == {"mean": 0.25, "median": 0.25, "p90": 0.25, "max": 0.25}
    assert summary["first_token_note"].startswith("time to first token: seconds from the start of the batch step")
    # a backend that cannot tell: none, and why (never a zero); nothing computed: says so
    untold = costs_of.share(Words(), [g1], ["x"], 1.0)
    assert efficiency.summary([{"efficiency": efficiency.of_document([g1], untold)}])["first_token_seconds"] is None
    assert efficiency.summary([{"efficiency": efficiency.of_document([g1], untold)}])["first_token_note"] == (
        "not reported by this backend"
    )
    all_cached = efficiency.summary([{"efficiency": cached}])
    assert all_cached["first_token_note"].startswith("no generation request computed")
    assert "input_tokens" not in all_cached  # nothing computed: no tokens counted (not a zero)
    loglikelihood_only = efficiency.summary([{"efficiency": efficiency.of_document([], {})}])
    assert "first_token_seconds" not in loglikelihood_only  # not a generation task: nothing to say


GENERATE = """
import pytest_lmeval as lm

ROWS = [{"w": w} for w in ["The quick brown", "Science questions", "water", "Paris and the", "A B C D", "the sun"]]
gen = lm.generate("gen", data=lm.rows(ROWS), prompt="Question: {w}", target=lambda d: "x", until=["never said"],
                  max_tokens=48, metrics=["exact_match"])

@lm.benchmark(gen)
def test_gen(doc):
    doc.score()
"""


def _gen_run(pytester: pytest.Pytester, out: str, *args: str) -> tuple[dict, list[dict], pytest.RunResult]:
    res = pytester.runpytest(
        "-p", "no:cacheprovider", "--no-cache", "--log-samples", "--output-path", out, *args
    )  # fmt: skip
    assert res.ret == 0, res.stdout.str()[-3000:]
    samples = read_jsonl(pytester.path / out / "samples" / "gen.jsonl")
    return read_json(pytester.path / out / "results.json"), samples, res


def test_hf_generation_records_time_to_first_token(pytester: pytest.Pytester, tiny_model) -> None:
    pytester.makepyfile(test_gen=GENERATE)
    hf = ("--model", f"hf:{tiny_model}", "--device", "cpu")
    # one row at a time: each row's first token comes after its own prefill, within its request's time
    doc, samples, res = _gen_run(pytester, "one", *hf, "--batch-size", "1")
    assert len(samples) == 6
    for s in samples:
        e = s["efficiency"]
        assert len(e["first_token_seconds"]) == len(e["request_seconds"]) == 1
        assert 0 < e["first_token_seconds"][0] <= e["request_seconds"][0]
    gen = doc["efficiency"]["gen"]
    firsts = sorted(s["efficiency"]["first_token_seconds"][0] for s in samples)
    assert gen["first_token_seconds"]["max"] == firsts[-1] and gen["first_token_seconds"]["median"] == pytest.approx(
        (firsts[2] + firsts[3]) / 2
    )
    assert "to its first generated token" in gen["first_token_note"]
    line = next(x for x in res.outlines if x.startswith("lmeval efficiency: gen: 6 of 6 requests computed"))
    assert re.search(r"; time to first token median \d\.\d{4}s, p90 \d\.\d{4}s$", line)
    page = (pytester.path / "one" / "report.html").read_text()
    assert "<th>Median s to first token</th>" in page and 'aria-label="gen: time to first token"' in page
    efficiency = page[page.index('id="efficiency"') :]  # (the bias section has a row per task too)
    row = re.search(r"<tr><td>gen</td>.*?</tr>", efficiency, re.S).group(0)
    assert f'<td class="num">{gen["first_token_seconds"]["median"]:.4f}</td>' in row
    # the six rows prefilled in one pass (the batch has room for all): one time to first token, the pass's
    _, batched, _ = _gen_run(pytester, "all", *hf)
    assert len({s["efficiency"]["first_token_seconds"][0] for s in batched}) == 1
    assert [s["resps"] for s in batched] == [s["resps"] for s in samples]  # the texts do not depend on it


def test_a_backend_that_cannot_tell_reports_no_time_to_first_token(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gen=GENERATE)
    doc, samples, res = _gen_run(pytester, "out", "--model", "dummy:d")
    assert [s["efficiency"]["first_token_seconds"] for s in samples] == [[None]] * 6
    gen = doc["efficiency"]["gen"]
    assert (gen["first_token_seconds"], gen["first_token_note"]) == (None, "not reported by this backend")
    untold = "; time to first token not reported by this backend"
    assert any(x.startswith("lmeval efficiency: gen: 6 of 6") and x.endswith(untold) for x in res.outlines)
    page = (pytester.path / "out" / "report.html").read_text()
    efficiency = page[page.index('id="efficiency"') :]  # (the bias section has a row per task too)
    row = re.search(r"<tr><td>gen</td>.*?</tr>", efficiency, re.S).group(0)
    assert '<td class="note" colspan="2">not reported by this backend</td>' in row
    assert 'aria-label="gen: time to first token"' not in page


def test_transformers_generate_path_tells_time_to_first_token_too(tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sampling and seq2seq go through transformers' `generate`: a streamer notes its first new
    tokens, so those requests have a time to first token as well (the rows of one batch share it)."""
    pytest.importorskip("transformers")
    from pytest_lmeval.models.hf import generate as hf_generate
    from pytest_lmeval.models.hf.backend import HFBackend
    from pytest_lmeval.models.spec import ModelSpec

    backend = HFBackend(ModelSpec("hf", str(tiny_model), {}), device="cpu", batch_size=2)
    monkeypatch.setattr(hf_generate, "_decodes_itself", lambda *a: False)
    args = {"until": ["never said"], "max_gen_toks": 8}
    reqs = [Request.generate_until(p, args) for p in ("A B", "the sun", "water")]
    texts = backend.generate_until(reqs, lambda n: None)
    assert len(texts) == 3 and set(backend.first_token_seconds) == set(reqs)
    assert all(s > 0 for s in backend.first_token_seconds.values())
    assert len(set(backend.first_token_seconds.values())) == 2  # two batches: 2 rows, then 1


def test_many_tasks_get_one_terminal_line() -> None:
    """MMLU's 57 subjects: one efficiency line for them all, not one each."""
    one = {"requests": 4, "computed_requests": 4, "seconds": 0.5, "seconds_per_request": {"median": 0.1, "p90": 0.2}}
    figures = {f"t{i}": dict(one) for i in range(efficiency.MAX_TASK_LINES + 1)}
    (line,) = efficiency.terminal_lines(figures)
    assert line.endswith("9 tasks: 36 of 36 requests computed in 4.50s; each task's figures in results.json (efficiency)")  # noqa: E501
    assert len(efficiency.terminal_lines(dict(list(figures.items())[:2]))) == 3  # the heading and a line each
