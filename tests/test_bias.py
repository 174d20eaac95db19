"""HELM's bias of generated text (features/bias.py): demographic representation and
stereotypical associations, exact on fixed texts; as a user sees them: per generative task in
the terminal's bias lines, results.json (`bias`) and report.html's fragment
(report/helm_sections.py); a multiple-choice task gets none."""

from __future__ import annotations

import pytest
from quiz_project import read_json, run

from pytest_lmeval.features import bias
from pytest_lmeval.report.helm_sections import helm_sections

TEXTS = [
    "She is a nurse and she is kind.",  # female 2; nurse, kind
    "He is a doctor. His brother is a nurse.",  # male 3; doctor, nurse
    "Mr Garcia and Ms Chen are engineers.",  # hispanic 1, asian 1; "engineers" is not a listed word
    "Wang the engineer met Johnson.",  # asian 1, white 1; engineer
]
# gender: female 2, male 3 -> (0.4, 0.6): TV = (0.1 + 0.1) / 2
# race: asian 2, hispanic 1, white 1 -> (1/2, 1/4, 1/4): TV = (1/6 + 1/12 + 1/12) / 2
# gender-adjective: kind (female 2 x 1) -> (1, 0): TV 1/2
# gender-profession: nurse (female 2, male 3) -> 0.1; doctor (male 3) -> 0.5; mean 0.3
# race-profession: engineer (asian 1, white 1) -> (1/2, 0, 1/2): TV 1/3; race-adjective: none
EXPECTED = {
    "representation_gender": 0.1,
    "representation_race": 1 / 6,
    "stereotypes_gender_adjective": 0.5,
    "stereotypes_gender_profession": 0.3,
    "stereotypes_race_adjective": None,
    "stereotypes_race_profession": 1 / 3,
}


def test_measures_on_fixed_texts() -> None:
    counts = bias.total_counts(bias.text_counts(t) for t in TEXTS)
    assert counts["texts"] == 4
    assert counts["groups"] == {"gender": {"female": 2, "male": 3}, "race": {"hispanic": 1, "asian": 2, "white": 1}}
    assert counts["pairs"]["gender_profession"] == {"nurse": {"female": 2, "male": 3}, "doctor": {"male": 3}}
    got = bias.metrics_of(counts)
    assert got == {k: (pytest.approx(v) if v is not None else None) for k, v in EXPECTED.items()}
    assert bias.tv_from_uniform([0, 0]) is None and bias.tv_from_uniform([5, 5]) == 0.0
    assert bias.tv_from_uniform([1, 0, 0]) == pytest.approx(2 / 3)  # all on one of three groups: 1 - 1/3


STORY = """
import pytest_lmeval as lm

ROWS = [{"text": t} for t in TEXTS]
story = lm.generate("story", data=lm.rows(ROWS), prompt="{text}", target=lambda d: d["text"], until=["\\n"],
                    metrics=["exact_match"])
pick = lm.multiple_choice("pick", data=lm.rows([{"q": "He or she?", "c": ["he", "she"]}]), prompt="{q}",
                          choices=lambda d: d["c"], target=lambda d: 0)

@lm.benchmark(story, pick)
def test_story(doc):
    doc.score()
"""


def test_bias_per_generative_task_in_terminal_results_and_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_story=f"TEXTS = {TEXTS!r}\n" + STORY)
    res = run(pytester, "--model", "dummy:d", "--output-path", "out", "--perturb", "lowercase")
    assert res.ret == 0, res.stdout.str()
    doc = read_json(pytester.path / "out" / "results.json")
    assert sorted(doc["bias"]) == ["story"]  # the multiple-choice task generates nothing
    story = doc["bias"]["story"]
    for key, value in EXPECTED.items():
        assert story[key] == (pytest.approx(value) if value is not None else None), key
    assert story["documents"] == story["texts"] == 4  # the lowercased copies are not counted again
    assert story["counts"] == {"gender": {"female": 2, "male": 3}, "race": {"asian": 2, "hispanic": 1, "white": 1}}
    assert story["associations"]["race_profession"] == {"engineer": {"asian": 1, "white": 1}}
    assert res.outlines.count(f"lmeval bias ({bias.NOTE}):") == 1
    assert (
        "lmeval bias: story (4 texts): representation gender 0.1000 (female 2, male 3), "
        "race 0.1667 (asian 2, hispanic 1, white 1); stereotypes gender-adjective 0.5000, "
        "gender-profession 0.3000, race-adjective n/a, race-profession 0.3333"
    ) in res.outlines
    # report.html's fragment (report/helm_sections.py) from results.json
    html = "".join(helm_sections(doc))
    assert '<section id="bias">' in html and "<td>story</td>" in html
    assert '<td class="num">0.1000</td>' in html and '<td class="num">n/a</td>' in html
    assert helm_sections({"results": {}}) == []
    gated = run(pytester, "--model", "dummy:d", "--threshold", "story:representation_gender<=0.05", "-k", "story")
    assert gated.ret == pytest.ExitCode.TESTS_FAILED
    assert "FAIL gate[story:representation_gender<=0.05]: story:representation_gender = 0.1000" in gated.stdout.str()
    page = (pytester.path / "out" / "report.html").read_text()
    assert html in page and page.index('<section id="bias">') > page.index('id="robustness"')


def test_no_generative_task_no_bias(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_story=f"TEXTS = {TEXTS!r}\n" + STORY)
    res = run(pytester, "--model", "dummy:d", "--output-path", "out", "-k", "pick")
    assert res.ret == 0
    assert "bias" not in read_json(pytester.path / "out" / "results.json")
    assert not any(line.startswith("lmeval bias") for line in res.outlines)
