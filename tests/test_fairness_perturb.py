"""Fairness perturbations (`--perturb dialect`, `--perturb names`, `fairness` for HELM's three):
their edits on fixed text, seeded and deterministic; as a user runs them: one item per document
and perturbation, `exact_match@dialect` and the fairness worst case `exact_match@fairness` in
results.json and the terminal table, the flipped documents listed, and a gate on the worst case."""

from __future__ import annotations

import re

import pytest
from quiz_project import read_json, read_jsonl, run, table_rows

from pytest_lmeval.features import fairness_words as words
from pytest_lmeval.features import perturbation as perturb
from pytest_lmeval.features import perturbation_edits as edits


def do(name: str, text: str, seed: int = 1) -> str:
    return edits.perturb_text(name, text, edits.rng_for(seed, "t", 0, name))


def test_dialect_on_fixed_text() -> None:
    text = "This is the thing: they are going to ask about it, and Sam isn't sure. Nothing else."
    assert do("dialect", text) == "Dis is da thang: dey are gonna aks bout it, and Sam ain't sho. Nothin else."
    assert do("dialect", text) == do("dialect", text, seed=2)  # no randomness in a word list
    assert do("dialect", "THE END") == "DA END"  # the case of the word kept


def test_names_swap_across_groups_keeping_gender_and_seeded() -> None:
    text = "Emily met Jamel; later Emily called Jamel and Sam."
    swapped = do("names", text)
    assert swapped == do("names", text)  # the same seed, the same swap
    first, second = swapped.split("; later ")
    new_emily, new_jamel = first.removesuffix(".").split(" met ")
    assert words.NAME_GROUP[new_emily] == ("black", "female") and words.NAME_GROUP[new_jamel] == ("white", "male")
    assert second == f"{new_emily} called {new_jamel} and Sam."  # one name, one replacement; Sam is not listed
    assert len({do("names", text, seed=s) for s in range(8)}) > 1  # the seed picks the replacement
    # a name swaps alike in every field of a document
    doc = edits.perturbed_doc({"q": "Where does Tyrone live?", "ctx": "Tyrone lives here."}, "names", 3, "t", 0)
    assert doc["q"].split()[2] == doc["ctx"].split()[0] != "Tyrone"


def test_fairness_names_helms_set() -> None:
    assert perturb.parse_names(["fairness"]) == ("gender", "dialect", "names")
    assert perturb.parse_names(["dialect,typos"]) == ("dialect", "typos")


ECHO = """
import pytest_lmeval as lm

ROWS = [
    {"w": "Jamel is here", "t": "Jamel is here"},
    {"w": "the cat", "t": "the cat"},
    {"w": "Paris", "t": "Paris"},
    {"w": "x", "t": "y"},
]
echo = lm.generate("echo", data=lm.rows(ROWS), prompt="{w}", target=lambda d: d["t"], until=["\\n"],
                   metrics=["exact_match"])

@lm.benchmark(echo)
def test_echo(doc):
    doc.score()
"""


def test_fairness_metrics_worst_case_and_gate(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_echo=ECHO)
    args = ("--model", "dummy:d", "--perturb", "dialect,names,lowercase", "--output-path", "out", "--log-samples")
    res = run(pytester, *args)
    assert res.ret == 0, res.stdout.str()
    res.assert_outcomes(passed=16)  # 4 documents, as they are and under 3 perturbations
    doc = read_json(pytester.path / "out" / "results.json")
    echo = doc["results"]["echo"]
    assert echo["exact_match,none"] == 0.75
    assert echo["exact_match@dialect,none"] == 0.5  # "the cat" became "da cat"
    assert echo["exact_match@names,none"] == 0.5  # Jamel became another name
    assert echo["exact_match@lowercase,none"] == 0.25
    assert echo["exact_match@fairness,none"] == 0.25  # worst over dialect and names: both broken
    assert echo["exact_match@robust,none"] == 0.0  # worst over all three: Paris lowercased too
    assert doc["robustness"]["echo"]["flipped"]["dialect"] == {"to_wrong": ["echo-1"], "to_right": []}
    assert doc["robustness"]["echo"]["flipped"]["names"] == {"to_wrong": ["echo-0"], "to_right": []}
    names = read_jsonl(pytester.path / "out" / "samples" / "echo.names.jsonl")[0]
    swapped = names["arguments"]["gen_args_0"]["arg_0"]
    assert swapped.endswith(" is here") and words.NAME_GROUP[swapped.split()[0]][0] == "white"
    assert (
        "lmeval robustness: echo (4 documents, exact_match,none): lowercase: 2 right to wrong, 0 wrong to right "
        "(echo-0, echo-2); dialect: 1 right to wrong, 0 wrong to right (echo-1); names: 1 right to wrong, "
        "0 wrong to right (echo-0)"
    ) in res.outlines
    rows = [r[4] for r in table_rows(res) if r[4].startswith("exact_match")]
    assert rows == [
        "exact_match",
        "exact_match@lowercase",
        "exact_match@dialect",
        "exact_match@names",
        "exact_match@robust",
        "exact_match@fairness",
    ]
    page = (pytester.path / "out" / "report.html").read_text()
    table = re.search(r"<h3>echo: exact_match \(4 documents\)</h3>\s*<table.*?</table>", page, re.S).group(0)
    assert re.findall(r"<th>(.*?)</th>", table) == [
        "as is", "lowercase", "dialect", "names", "worst case (fairness)", "worst case"
    ]  # fmt: skip
    assert re.findall(r'<td class="num">(.*?)</td>', table) == [
        "0.7500",
        "0.2500",
        "0.5000",
        "0.5000",
        "0.2500",
        "0.0000",
    ]
    failed = run(pytester, *args, "--threshold", "echo:exact_match@fairness>=0.5")
    assert failed.ret == 1
    assert (
        "FAIL gate[echo:exact_match@fairness>=0.5]: echo:exact_match@fairness = 0.2500, required >= 0.5000"
        in failed.outlines
    )
