"""Robustness and fairness perturbations (pytest_lmeval/perturb.py): each one's edits on fixed
text, seeded and deterministic; as a user runs them: one item per document and perturbation,
named so -k picks them, prompts perturbed but choices and targets not, the metric under each
perturbation and its worst case in the table and results.json, flipped documents listed, a gate
on the worst case, and the same results under -n 2."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from quiz_project import read_json, read_jsonl, run, table_rows, write_quiz

from pytest_lmeval.features import perturbation as perturb
from pytest_lmeval.features import perturbation_edits as edits
from pytest_lmeval.features import perturbation_words as words

TEXT = "Which of these do not change? He said it is his dog, and I am sure they are right."


def test_each_perturbation_on_fixed_text() -> None:
    def do(name: str, text: str = TEXT, seed: int = 1) -> str:
        return edits.perturb_text(name, text, edits.rng_for(seed, "t", 0, name))

    assert do("lowercase") == "which of these do not change? he said it is his dog, and i am sure they are right."
    assert do("contractions") == "Which of these don't change? He said it's his dog, and I'm sure they're right."
    assert do("expansions", "Don't say it's what they won't do; I'm sure we'll see.") == (
        "Do not say it is what they will not do; I am sure we will see."
    )
    assert do("gender") == "Which of these do not change? She said it is her dog, and I am sure they are right."
    assert do("misspellings", "Which one do you believe?", seed=0) in {
        "Which one do you believe?", "Wich one do you believe?", "Which one do you beleive?",
        "Wich one do you beleive?",
    }  # fmt: skip
    spaced = do("whitespace")
    assert spaced != TEXT and re.sub(" +", " ", spaced) == TEXT and "   " * 2 not in spaced
    typed = do("typos")
    assert len(typed) == len(TEXT) and typed != TEXT
    for before, after in zip(TEXT, typed, strict=True):  # each edit is a neighbouring key, same case
        if before != after:
            assert after.lower() in words.NEIGHBOURS[before.lower()] and before.isupper() == after.isupper()


def test_edits_are_seeded_by_seed_task_document_and_name() -> None:
    def typos(seed: int, task: str = "t", doc: int = 0) -> str:
        return edits.perturb_text("typos", TEXT * 3, edits.rng_for(seed, task, doc, "typos"))

    assert typos(1) == typos(1)
    assert len({typos(1), typos(2), typos(1, "u"), typos(1, doc=1)}) == 4


def test_names_robustness_for_helms_set_and_refuses_unknown_ones() -> None:
    assert perturb.parse_names(["lowercase,robustness", "gender"]) == (
        "lowercase", "typos", "contractions", "expansions", "misspellings", "whitespace", "gender",
    )  # fmt: skip
    with pytest.raises(Exception, match="unknown perturbation 'tpyos'"):
        perturb.parse_names(["tpyos"])


QUIZ = ("evals", "--model", "dummy:d", "--data-dir", "data", "--log-samples")


def test_items_per_perturbation_with_prompts_perturbed_and_choices_kept(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    listed = run(pytester, *QUIZ, "--perturb", "lowercase,gender", "--collect-only", "-q")
    ids = [line.split("[", 1)[1][:-1] for line in listed.outlines if "::test_quiz[" in line]
    assert ids[:3] == ["quiz_a-0", "quiz_a-0[lowercase]", "quiz_a-0[gender]"] and len(ids) == 24
    res = run(pytester, *QUIZ, "--perturb", "lowercase", "--output-path", "out", "-k", "quiz_a-2")
    res.assert_outcomes(passed=2)
    original = read_jsonl(pytester.path / "out" / "samples" / "quiz_a.jsonl")[0]
    lowered = read_jsonl(pytester.path / "out" / "samples" / "quiz_a.lowercase.jsonl")[0]
    assert lowered["perturbation"] == "lowercase" and lowered["doc_id"] == original["doc_id"] == 2
    # the question perturbed (the "Q:"/"A:" frame is the template's, not the question's), choices as they were
    args = [(a["arg_0"], a["arg_1"]) for a in lowered["arguments"].values()]
    assert args == [("Q: third greek letter?\nA:", f" {c}") for c in ("alpha", "be", "gamma!")]
    assert lowered["target"] == original["target"] == "2"


ECHO = """
import pytest_lmeval as lm

# the dummy model repeats the prompt's last line: an answer right in capitals is wrong in lower case
ROWS = [{"w": "Paris", "t": "Paris"}, {"w": "rome", "t": "rome"}, {"w": "Oslo", "t": "Oslo"}, {"w": "x", "t": "y"}]
echo = lm.generate("echo", data=lm.rows(ROWS), prompt="{w}", target=lambda d: d["t"], until=["\\n"],
                   metrics=["exact_match"])

@lm.benchmark(echo)
def test_echo(doc):
    doc.score()
"""


def test_metric_per_perturbation_worst_case_and_flipped_documents(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_echo=ECHO)
    res = run(pytester, "--model", "dummy:d", "--perturb", "lowercase,whitespace", "--output-path", "out")
    assert res.ret == 0, res.stdout.str()
    res.assert_outcomes(passed=12)
    doc = read_json(pytester.path / "out" / "results.json")
    echo = doc["results"]["echo"]
    assert echo["exact_match,none"] == 0.75  # Paris, rome, Oslo right; x is not y
    assert echo["exact_match@lowercase,none"] == 0.25  # only rome survives
    assert echo["exact_match@whitespace,none"] == 0.75  # one-word prompts have no spaces to stretch
    assert echo["exact_match@robust,none"] == 0.25  # document by document, the worst of the three
    assert echo["exact_match@lowercase_stderr,none"] == pytest.approx(0.25)  # sqrt(0.25 * 0.75 / 3)
    assert doc["higher_is_better"]["echo"]["exact_match@robust"] is True
    assert doc["robustness"]["echo"] == {
        "perturbations": ["lowercase", "whitespace"],
        "documents": 4,
        "metric": "exact_match,none",
        "flipped": {
            "lowercase": {"to_wrong": ["echo-0", "echo-2"], "to_right": []},
            "whitespace": {"to_wrong": [], "to_right": []},
        },
    }
    rows = [r for r in table_rows(res) if r[4].startswith("exact_match")]
    assert [r[4] for r in rows] == [
        "exact_match",
        "exact_match@lowercase",
        "exact_match@whitespace",
        "exact_match@robust",
    ]
    line = (
        "lmeval robustness: echo (4 documents, exact_match,none): lowercase: 2 right to wrong, 0 wrong to right "
        "(echo-0, echo-2); whitespace: 0 right to wrong, 0 wrong to right"
    )
    assert line in res.outlines
    page = (pytester.path / "out" / "report.html").read_text()
    table = re.search(r"<h3>echo: exact_match \(4 documents\)</h3>\s*<table.*?</table>", page, re.S).group(0)
    assert re.findall(r"<th>(.*?)</th>", table) == ["as is", "lowercase", "whitespace", "worst case"]
    assert re.findall(r'<td class="num">(.*?)</td>', table) == ["0.7500", "0.2500", "0.7500", "0.2500"]
    assert '-k "[echo-0] or [echo-2] or [echo-0[lowercase]] or [echo-2[lowercase]]"' in page
    # -k picks the perturbed items by name
    only = run(pytester, "--model", "dummy:d", "--perturb", "lowercase", "-k", "lowercase", "--output-path", "k")
    only.assert_outcomes(passed=4)
    assert only.ret == 0 and "PARTIAL" not in only.stdout.str()  # the originals were not asked for
    picked = run(pytester, "--model", "dummy:d", "--perturb", "lowercase", "-k", "[echo-0] or [echo-2[lowercase]]")
    picked.assert_outcomes(passed=2)


def test_a_gate_on_the_worst_case(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_echo=ECHO)
    args = ("--model", "dummy:d", "--perturb", "lowercase", "--output-path", "out")
    failed = run(pytester, *args, "--threshold", "echo:exact_match@robust>=0.5")
    assert failed.ret == 1
    assert "FAIL gate[echo:exact_match@robust>=0.5]: echo:exact_match@robust = 0.2500, required >= 0.5000" in (
        failed.outlines
    )
    assert run(pytester, *args, "--threshold", "echo:exact_match@robust>=0.25").ret == 0
    unperturbed = run(pytester, "--model", "dummy:d", "--threshold", "echo:exact_match@robust>=0.25")
    assert unperturbed.ret == 1
    assert any("robust needs --perturb" in line for line in unperturbed.outlines)


def test_an_unknown_perturbation_is_one_error_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_echo=ECHO)
    res = run(pytester, "--model", "dummy:d", "--perturb", "typoes")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert any("unknown perturbation 'typoes'" in line for line in res.errlines)


def test_a_marker_asks_for_perturbations_in_the_benchmark_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_echo=ECHO.replace(
            "@lm.benchmark(echo)", '@pytest.mark.lmeval_perturb("lowercase")\n@lm.benchmark(echo)'
        ).replace("import pytest_lmeval", "import pytest\nimport pytest_lmeval")
    )
    res = run(pytester, "--model", "dummy:d", "--output-path", "out")
    res.assert_outcomes(passed=8)
    assert read_json(pytester.path / "out" / "results.json")["results"]["echo"]["exact_match@lowercase,none"] == 0.25


def test_the_benchmark_decorator_asks_for_perturbations(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_echo=ECHO.replace("@lm.benchmark(echo)", '@lm.benchmark(echo, perturb=["lowercase"])'))
    res = run(pytester, "--model", "dummy:d", "--output-path", "out", "-k", "lowercase")
    res.assert_outcomes(passed=4)
    res = run(pytester, "--model", "dummy:d", "--output-path", "out")
    assert read_json(pytester.path / "out" / "results.json")["results"]["echo"]["exact_match@lowercase,none"] == 0.25


def test_two_workers_give_the_results_of_one_with_perturbations(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    write_quiz(pytester.path)
    pytester.makepyfile(test_echo=ECHO)
    args = (*QUIZ, "test_echo.py", "--perturb", "typos,lowercase,gender", "--seed", "7")
    one = run(pytester, *args, "--output-path", "one")
    two = run(pytester, *args, "--output-path", "two", "-n", "2")
    assert one.ret == two.ret == 0
    two.assert_outcomes(passed=48)  # (8 quiz + 4 echo documents) x (original + 3 perturbations)
    a, b = (read_json(pytester.path / d / "results.json") for d in ("one", "two"))
    assert b["results"] == a["results"] and b["robustness"] == a["robustness"]
    assert "acc@typos,none" in a["results"]["quiz_a"] and "exact_match@robust,none" in a["results"]["echo"]
    # the group quiz: its tasks' figures under each perturbation, weighted by size as its own acc is
    # (the dummy's log-likelihoods ignore the prompt, so nothing changes under a perturbation)
    quiz = a["results"]["quiz"]
    assert quiz["acc@typos,none"] == quiz["acc@robust,none"] == quiz["acc,none"] == 0.5
    assert quiz["acc@gender_stderr,none"] == quiz["acc_stderr,none"]
    assert list(quiz)[1:6] == [
        "acc,none",
        "acc_stderr,none",
        "acc@typos,none",
        "acc@typos_stderr,none",
        "acc@lowercase,none",
    ]
    for name in ("quiz_a.typos", "echo.lowercase"):
        one_lines, two_lines = (read_jsonl(pytester.path / d / "samples" / f"{name}.jsonl") for d in ("one", "two"))
        assert [{k: v for k, v in s.items() if k != "efficiency"} for s in two_lines] == [
            {k: v for k, v in s.items() if k != "efficiency"} for s in one_lines
        ]  # all but the time each request took


WINO = """
import json
from pathlib import Path

import pytest_lmeval as lm

# Winogrande's shape (evals/winogrande): each option fills the blank; the rest of the sentence follows
ROWS = [json.loads(line) for line in Path("wino.jsonl").read_text().splitlines()]


def _blank(doc):
    return doc["sentence"].index("_")


wino = lm.multiple_input(
    "wino",
    data=lm.rows(ROWS),
    contexts=lambda doc: [doc["sentence"][: _blank(doc)] + o for o in (doc["option1"], doc["option2"])],
    continuation=lambda doc: doc["sentence"][_blank(doc) + 1 :].strip(),
    target=lambda doc: int(doc["answer"]) - 1,
)
pages = lm.rolling("pages", data=lm.rows([{"page": "One page of text."}, {"page": "Another page."}]), text="{page}")


@lm.benchmark(wino, pages)
def test_wino(doc):
    doc.score()
"""
WINO_ROWS = Path(__file__).parent / "data" / "mirror" / "allenai" / "winogrande" / "winogrande_xl" / "train.jsonl"


def _contexts(path: Path) -> list[list[tuple[str, str]]]:
    return [[(a["arg_0"], a["arg_1"]) for a in s["arguments"].values()] for s in read_jsonl(path)]


def test_multiple_input_documents_are_perturbed_around_their_options(pytester: pytest.Pytester) -> None:
    shutil.copy(WINO_ROWS, pytester.path / "wino.jsonl")
    rows = read_jsonl(WINO_ROWS)
    pytester.makepyfile(test_wino=WINO)
    args = ("--model", "dummy:d", "--perturb", "typos,lowercase", "--log-samples", "--seed", "3")
    listed = run(pytester, *args, "--collect-only", "-q")
    ids = [line.split("[", 1)[1][:-1] for line in listed.outlines if "::test_wino[" in line]
    assert ids[:3] == ["wino-0", "wino-0[typos]", "wino-0[lowercase]"] and len(ids) == 3 * len(rows) + 2
    assert "pages-0" in ids and not any(i.startswith("pages-0[") for i in ids)
    res = run(pytester, *args, "--output-path", "out")
    assert res.ret == 0, res.stdout.str()
    samples = pytester.path / "out" / "samples"
    original = _contexts(samples / "wino.jsonl")
    for name in ("typos", "lowercase"):
        perturbed = _contexts(samples / f"wino.{name}.jsonl")
        assert len(perturbed) == len(rows)
        for row, before, after in zip(rows, original, perturbed, strict=True):
            options = (row["option1"], row["option2"])
            # each context still ends with its own option, word for word; the text around it is perturbed
            assert [ctx.endswith(o) for (ctx, _), o in zip(after, options, strict=True)] == [True, True]
            # the same edits for every option of the document: one perturbed prefix, one continuation
            assert after[0][0][: -len(options[0])] == after[1][0][: -len(options[1])]
            assert after[0][1] == after[1][1]
            if name == "lowercase":
                prefix = before[0][0][: -len(options[0])]
                assert after[0][0] == _lower_but(prefix, options) + options[0]
                assert after[0][1] == before[0][1].lower()
        assert perturbed != original
        assert read_jsonl(samples / f"wino.{name}.jsonl")[0]["doc"]["answer"] == rows[0]["answer"]  # the answer kept
    assert _contexts(samples / "wino.lowercase.jsonl")[2][0] == (
        "Anna thanked Beth because Anna",  # the names stay as they are, in the sentence too
        " had helped her move.",
    )
    # the same seed makes the same prompts; another seed other typos
    typed = _contexts(samples / "wino.typos.jsonl")
    assert run(pytester, *args, "--output-path", "again").ret == 0
    assert _contexts(pytester.path / "again" / "samples" / "wino.typos.jsonl") == typed
    assert run(pytester, *args[:-1], "4", "--output-path", "other").ret == 0
    assert _contexts(pytester.path / "other" / "samples" / "wino.typos.jsonl") != typed
    # a perplexity task is not perturbed: one line says which and why, and results.json keeps it
    why = perturb.NOT_PERTURBED["loglikelihood_rolling"]
    assert f"lmeval robustness: not perturbed: pages ({why})" in res.outlines
    doc = read_json(pytester.path / "out" / "results.json")
    assert doc["not_perturbed"] == {"pages": why}
    assert doc["robustness"]["wino"]["perturbations"] == ["typos", "lowercase"]
    assert "acc@typos,none" in doc["results"]["wino"] and "acc@robust,none" in doc["results"]["wino"]
    plain = run(pytester, "--model", "dummy:d", "--output-path", "plain")
    assert not any("not perturbed" in line for line in plain.outlines)  # nothing asked, nothing to say
    assert "not_perturbed" not in read_json(pytester.path / "plain" / "results.json")


def _lower_but(text: str, keep: tuple[str, ...]) -> str:
    """Lower case, except the option names, which stay as written."""
    pattern = re.compile(r"(?<!\w)(" + "|".join(re.escape(k) for k in sorted(keep, key=len, reverse=True)) + r")(?!\w)")
    parts = pattern.split(text)
    return "".join(p if i % 2 else p.lower() for i, p in enumerate(parts))
