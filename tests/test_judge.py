"""LLM-as-a-judge, as a user runs it: the verdict rule; judged metrics through a pytest run with
the dummy as the judge (it repeats the judging prompt's last line, so a template ending in the
answer makes the judge say what the model said): verdicts parsed, malformed replies asked
again then left unscored with the reason, the judge's prompts and replies in the samples, the
strategies, a run without a judge; and the shipped judged example end to end against the real
OpenAI-compatible test server serving a tiny model as the judge: verdicts parsed from its
replies, cached (a rerun computes nothing), and its API key in no file written."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from benchmark_source import benchmark_source
from openai_server import ModelService, OpenAIServer

from pytest_lmeval.tasks.judged_metrics import Judge

ROOT = Path(__file__).resolve().parents[1]


def test_verdict_rule() -> None:
    judge = Judge()
    assert judge.parse("CORRECT") == 1.0
    assert judge.parse("incorrect.") == 0.0
    assert judge.parse("Correct!") == 1.0
    assert judge.parse("CORRECT. The answer is correct.") == 1.0  # one verdict, said twice
    assert judge.parse("correctly answered") is None  # whole words only
    assert judge.parse("I cannot tell") is None
    rating = Judge(reference=None, scale=10)
    assert rating.parse("Fine answer. Rating: [[7]]") == pytest.approx(0.7)
    assert rating.parse("[[11]]") is None  # out of range: malformed
    assert rating.parse("7/10") is None
    assert rating.parse("Reply with the rating in double brackets, for example [[10]].") is None  # the echo
    assert rating.parse("...for example [[10]]. My rating: [[4]]") == pytest.approx(0.4)
    assert rating.parse("[[3]] or maybe [[4]]") is None  # two ratings: ambiguous
    custom = Judge(verdicts=(("yes", 1.0), ("no", 0.0)))
    assert custom.parse("yes or no? No.") == 0.0
    assert custom.parse("\x16no\x05") == 0.0
    assert custom.parse("yesterday") is None


@pytest.mark.parametrize(
    "reply,score",
    [
        # an echoed instruction is not a verdict (it was read as CORRECT, the first word said)
        ("CORRECT or INCORRECT: CORRECT ... The answer is incorrect.", None),  # ambiguous: asked again
        ("CORRECT or INCORRECT: INCORRECT", 0.0),
        ("Reply with one word: CORRECT or INCORRECT.\nCORRECT", 1.0),
        ("Reply with exactly CORRECT or INCORRECT, nothing else.", None),  # only the echo
        ("'CORRECT'/'INCORRECT' -> **INCORRECT**", 0.0),
        ("CORRECT, INCORRECT, or neither", None),
        # two different verdicts are ambiguous, whichever comes last
        ("It is INCORRECT, not correct", None),
        ("CORRECT. Well, actually INCORRECT", None),
    ],
)
def test_echoed_instruction_and_ambiguous_replies(reply: str, score: float | None) -> None:
    assert Judge().parse(reply) == score


# The model's answer is its prompt's last line (`reply`); the judge's is the judging prompt's
# last line, which this template makes the model's answer.
ROWS = [
    {"question": "Why is the sky blue?", "answer": "Rayleigh scattering", "reply": "CORRECT, it scatters blue"},
    {"question": "What is 2+2?", "answer": "4", "reply": "incorrect: five"},
    {"question": "Name a gas.", "answer": "helium", "reply": "maybe"},  # no verdict, ever
    {"question": "Capital of Italy?", "answer": "Rome", "reply": "rome."},  # the rule says right, the judge nothing
]
BENCH = f"""
import pytest_lmeval as lm

ROWS = {ROWS!r}

qa = lm.generate(
    "qa",
    data=lm.rows(ROWS),
    prompt="{{question}}\\n{{reply}}",
    target="answer",
    metrics=[lm.judge("judge", template="Q: {{question}}\\nRef: {{reference}}\\n{{answer}}",
                      strategy=STRATEGY)],
)


@lm.benchmark(qa)
def test_qa(doc):
    doc.score()
"""


def _project(pytester: pytest.Pytester, strategy: str = "llm") -> None:
    pytester.makepyfile(test_qa=BENCH.replace("STRATEGY", repr(strategy)))


def _run(pytester: pytest.Pytester, out: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "test_qa.py", "-p", "no:cacheprovider", "--model", "dummy:d", "--output-path", out, "--log-samples", *args
    )  # fmt: skip


def _read(pytester: pytest.Pytester, out: str) -> tuple[dict, dict[int, dict]]:
    doc = json.loads((pytester.path / out / "results.json").read_text())
    path = pytester.path / out / "samples" / "qa.jsonl"
    samples = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return doc, {s["doc_id"]: s for s in samples}


def test_judged_run_with_retries_and_cache(pytester: pytest.Pytester) -> None:
    _project(pytester)
    args = ["--judge-model", "dummy:judge", "--cache-dir", "cache"]
    first = _run(pytester, "first", *args)
    assert first.ret == pytest.ExitCode.TESTS_FAILED  # the documents without a verdict
    first.assert_outcomes(passed=2, failed=2)
    first.stdout.fnmatch_lines(
        [
            "lmeval judge: 6 requests (6 unique): 0 from cache, 6 computed; 2 answers judged, 2 asked again, "
            "2 without a verdict (unscored)",
            "*qa-2*no verdict in the judge's reply after 2 tries (expected CORRECT or INCORRECT); "
            "its last reply: 'Your previous re'*",
        ]
    )
    doc, samples = _read(pytester, "first")
    assert doc["results"]["qa"]["judge,none"] == pytest.approx(1 / 2)  # CORRECT, incorrect
    assert [(e["id"], e["status"]) for e in doc["not_scored"]] == [("qa-2", "error"), ("qa-3", "error")]
    assert doc["engine"]["judge"]["model"] == "dummy:judge" and doc["engine"]["judge"]["malformed"] == 2
    judged = samples[0]["judged"]["judge"]
    assert judged["prompts"] == ["Q: Why is the sky blue?\nRef: Rayleigh scattering\nCORRECT, it scatters blue"]
    assert judged["replies"] == ["CORRECT, it scat"] and judged["score"] == 1.0  # max_tokens=16: 16 characters
    assert samples[1]["judged"]["judge"]["score"] == 0.0

    again = _run(pytester, "again", *args)
    again.stdout.fnmatch_lines(["lmeval judge: 6 requests (6 unique): 6 from cache, 0 computed; *"])
    assert _read(pytester, "again")[0]["results"] == doc["results"]


def test_strategies(pytester: pytest.Pytester) -> None:
    _project(pytester, "llm_recall")
    recall = _run(pytester, "recall", "--judge-model", "dummy:judge", "--no-cache")
    # "rome." equals the reference by the rule: right without asking the judge (3 asked, 1 twice)
    recall.stdout.fnmatch_lines(["lmeval judge: 4 requests (4 unique): 0 from cache, 4 computed; 2 answers judged*"])
    doc, samples = _read(pytester, "recall")
    assert doc["results"]["qa"]["judge,none"] == pytest.approx(2 / 3)
    assert "judged" not in samples[3] and samples[3]["judge"] == 1.0  # the metric, by the rule

    rule = _run(pytester, "rule", "--judge-strategy", "rule", "--no-cache")  # no judge model needed
    assert rule.ret == 0
    assert _read(pytester, "rule")[0]["results"]["qa"]["judge,none"] == pytest.approx(1 / 4)
    forced = _run(pytester, "forced", "--judge-strategy", "llm", "--judge-model", "dummy:judge", "--no-cache")
    forced.stdout.fnmatch_lines(["lmeval judge: 6 requests *"])  # the judge asked about "rome." too


YAML_TASK = """\
task: yqa
dataset_path: local/yqa
output_type: generate_until
test_split: test
doc_to_text: "{{question}}\\n{{reply}}"
doc_to_target: answer
metric_list:
  - metric: judge
    fn: !function helpers.judge
"""
HELPERS = """\
import pytest_lmeval as lm

judge = lm.judge("judge", template="Q: {question}\\nRef: {reference}\\n{answer}")
"""


def test_judged_metric_in_yaml(pytester: pytest.Pytester) -> None:
    folder = pytester.path / "evals" / "yqa"
    folder.mkdir(parents=True)
    (folder / "yqa.yaml").write_text(YAML_TASK)
    (folder / "helpers.py").write_text(HELPERS)
    (folder / "test_yqa.py").write_text(benchmark_source("yqa", "yqa"))
    data = pytester.path / "data" / "local" / "yqa" / "default"
    data.mkdir(parents=True)
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (pytester.path / "pytest.ini").write_text("[pytest]\nlmeval_evals_dir = evals\n")
    result = pytester.runpytest(
        "evals", "-p", "no:cacheprovider", "--no-cache", "--model", "dummy:d", "--data-dir", "data",
        "--judge-model", "dummy:judge", "--output-path", "out",
    )  # fmt: skip
    result.stdout.fnmatch_lines(["lmeval judge: 6 requests (6 unique): 0 from cache, 6 computed; 2 answers judged*"])
    doc = json.loads((pytester.path / "out" / "results.json").read_text())
    assert doc["results"]["yqa"]["judge,none"] == pytest.approx(1 / 2)


def test_judged_metric_without_a_judge_stops_before_the_model(pytester: pytest.Pytester) -> None:
    """No --judge-model for a metric that asks the judge: one ERROR line, before the model loads
    (features/judging.py check_judge_given), nothing written."""
    _project(pytester)
    result = _run(pytester, "out", "--no-cache")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: task 'qa': metric 'judge' is scored by a judge model: pass --judge-model BACKEND:NAME*"]
    )
    assert not (pytester.path / "out" / "results.json").exists()


def test_bad_judge_options_are_one_line(pytester: pytest.Pytester) -> None:
    _project(pytester)
    result = _run(pytester, "out", "--judge-strategy", "sometimes")
    result.stderr.fnmatch_lines(["*--judge-strategy 'sometimes': use one of auto, rule, llm, llm_recall*"])
    result = _run(pytester, "out", "--judge-model-args", "base_url=http://x")
    result.stderr.fnmatch_lines(["*--judge-model-args needs --judge-model BACKEND:NAME*"])


# -- the shipped example against a real server ------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_hf_judge_and_xdist(pytester: pytest.Pytester, tiny: Path) -> None:
    """A local transformers model as the judge (`hf:`), and the same numbers under -n 2 (each
    worker judges its own shard)."""
    _project(pytester)
    judge = ["--judge-model", "dummy:judge", "--no-cache"]
    one = _run(pytester, "one", *judge)
    two = _run(pytester, "two", *judge, "-n", "2")
    assert one.ret == two.ret == pytest.ExitCode.TESTS_FAILED
    first, second = _read(pytester, "one")[0], _read(pytester, "two")[0]
    assert first["results"] == second["results"] and first["not_scored"] == second["not_scored"]
    line = next(x for x in one.outlines if x.startswith("lmeval judge: "))
    assert [x for x in two.outlines if x.startswith("lmeval judge: ")] == [line]  # the workers' figures, added up
    hf = _run(pytester, "hf", "--judge-model", f"hf:{tiny}", "--judge-model-args", "dtype=float32", "--no-cache")
    hf.stdout.fnmatch_lines(["*loading judge hf:*", "lmeval judge: * requests (* unique): 0 from cache, * computed; *"])
    doc = _read(pytester, "hf")[0]
    assert doc["engine"]["judge"]["model"].startswith("hf:")
    # the tiny random judge never says CORRECT or INCORRECT: each answer asked twice, then unscored
    assert [e["reason"][:28] for e in doc["not_scored"]] == ["judge 'judge': no verdict in"] * 4
    assert doc["engine"]["judge"]["requests"] == 8


# The tiny random model never says CORRECT; it does say "no" and "true" as whole words in some
# replies, which a benchmark may name as its verdicts.
WORDS_BENCH = """
import pytest_lmeval as lm

words = lm.judge("judge", verdicts={"true": 1.0, "no": 0.0}, retries=1)
judged_words = lm.generate("judged_words", data=lm.local("questions.jsonl"), prompt="Question: {question}\\nAnswer:",
                           target="answer", until=["\\n"], metrics=[words])


@lm.benchmark(judged_words)
def test_words(doc):
    doc.score()
"""
WORD = re.compile(r"(?<!\w)(true|no)(?!\w)", re.IGNORECASE)


def test_judged_example_against_a_real_server(pytester: pytest.Pytester, tiny: Path, monkeypatch) -> None:
    secret = "sk-judge-" + "0a1b2c3d4e5f" * 3
    monkeypatch.setenv("LMEVAL_JUDGE_KEY", secret)
    # the shipped example where it is (a copy would declare the library's task a second time),
    # and a benchmark of our own on its questions
    example = ROOT / "evals" / "judged_qa"
    shutil.copy(example / "questions.jsonl", pytester.path / "questions.jsonl")
    (pytester.path / "test_words.py").write_text(WORDS_BENCH)
    with OpenAIServer(ModelService(tiny), "tiny-judge", api_key=secret) as server:
        args = f"base_url={server.url},api_key_env=LMEVAL_JUDGE_KEY,max_gen_toks=16"
        judge = ["--judge-model", "local-chat-completions:tiny-judge", "--judge-concurrency", "3",
                 "--judge-model-args", args]  # fmt: skip

        def run(out: str) -> pytest.RunResult:
            return pytester.runpytest(
                str(example), "test_words.py", "-p", "no:cacheprovider", "--model", "dummy:d", "--output-path", out,
                "--log-samples", "--cache-dir", "cache", *judge,
            )  # fmt: skip

        first = run("first")
        asked = server.stats.prompts
        again = run("again")
        assert server.stats.prompts == asked + 1, "the rerun asked the judge more than the cache's identity probe"
    out = first.stdout.str()
    assert "lmeval: loading judge local-chat-completions:tiny-judge" in out
    # judged_qa: the tiny judge never says CORRECT or INCORRECT: every document asked twice,
    # then unscored with the reason; judged_words: parsed where it says "true" or "no"
    doc, samples = json.loads((pytester.path / "first" / "results.json").read_text()), {}
    for line in (pytester.path / "first" / "samples" / "judged_words.jsonl").read_text().splitlines():
        sample = json.loads(line)
        samples[sample["doc_id"]] = sample["judged"]["judge"]
    unscored = {e["id"]: e["reason"] for e in doc["not_scored"]}
    assert all(unscored.get(f"judged_qa-{i}", "").startswith("judge 'judge': no verdict") for i in range(12))
    assert 0 < len(samples) < 12, "some replies give a verdict and some do not"
    for judged in samples.values():
        said = {w.lower() for w in WORD.findall(judged["replies"][-1])}
        assert len(said) == 1 and judged["score"] == {"true": 1.0, "no": 0.0}[said.pop()]
        # asked again only when a reply named no verdict, or both
        assert all(len({w.lower() for w in WORD.findall(r)}) != 1 for r in judged["replies"][:-1])
    words_unscored = [k for k in unscored if k.startswith("judged_words-")]
    assert len(words_unscored) == 12 - len(samples)
    assert doc["results"]["judged_words"]["judge,none"] == pytest.approx(
        sum(j["score"] for j in samples.values()) / len(samples)
    )
    assert doc["engine"]["judge"]["concurrency"] == 3
    assert doc["engine"]["judge"]["model_args"]["api_key_env"] == "LMEVAL_JUDGE_KEY"
    first.stdout.fnmatch_lines(["lmeval judge: * requests (* unique): 0 from cache, * computed; *"])
    again.stdout.fnmatch_lines(["lmeval judge: * requests (* unique): * from cache, 0 computed; *"])
    redone = json.loads((pytester.path / "again" / "results.json").read_text())
    assert redone["results"] == doc["results"] and redone["not_scored"] == doc["not_scored"]
    files = [p for p in pytester.path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" for p in files) and any(p.name == "results.json" for p in files)
    for path in files:
        assert secret not in path.read_text(errors="replace"), path
    assert secret not in out + first.stderr.str() + again.stdout.str() + again.stderr.str()


def test_a_judge_that_gives_up_leaves_its_documents_unscored(pytester: pytest.Pytester, tiny: Path) -> None:
    _project(pytester)
    with OpenAIServer(ModelService(tiny), "tiny-judge") as server:
        server.faults.fail_marker = "Name a gas."  # doc 2's judging prompt: a client error, not retried
        server.faults.fail_status = 400
        server.faults.fail_message = "judging refused (injected)"
        result = _run(pytester, "out", "--no-cache", "--judge-model", "local-chat-completions:tiny-judge",
                      "--judge-model-args", f"base_url={server.url},max_retries=0")  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the run went on: not stopped (exit 2)
    reasons = {e["id"]: e["reason"] for e in _read(pytester, "out")[0]["not_scored"]}
    assert reasons["qa-2"].startswith("judge 'judge': the judge gave no answer: ")
    assert "judging refused (injected)" in reasons["qa-2"]
    assert all(r.startswith("judge 'judge': no verdict") for k, r in reasons.items() if k != "qa-2")
