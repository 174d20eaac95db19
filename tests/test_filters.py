"""Answer extraction equals lm-eval's own filters on the same answers, and a bad filter_list is
refused with a message that names the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_lmeval.core.errors import LmevalError
from pytest_lmeval.scoring import filters

lm_filters = pytest.importorskip("lm_eval.filters")
from lm_eval.filters import extraction, selection, transformation  # noqa: E402

ANSWERS = [
    ["Natalia sold 48/2 = 24 clips.\n#### 72", "#### -3.5 then #### 8"],
    ["The answer is $1,234.", "no number here"],
    ["So the answer is (B).", "  Mixed Case Answer  "],
    ["", "#### 1,000,000"],
]
DOCS = [{"choices": ["Paris", "Lyon", "Guilty of Romance", "Guilty"]} for _ in ANSWERS]


def _lm(cls, **kwargs):
    return [list(x) if isinstance(x, list) else x for x in cls(**kwargs).apply([list(a) for a in ANSWERS], DOCS)]


def _ours(cls, **kwargs):
    return list(cls(**kwargs).apply([list(a) for a in ANSWERS], DOCS))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"regex_pattern": r"#### (\-?[0-9\.\,]+)"},
        {"regex_pattern": r"(-?[$0-9.,]{2,})|(-?[0-9]+)", "group_select": -1},
        {"regex_pattern": r"The answer is (\-?[0-9\.\,]+).", "fallback": "NONE"},
        {"regex_pattern": r"(?<=the answer is )(.*)(?=.)"},
        {"regex_pattern": r"\b(True|False)\b", "group_select": 0},
    ],
)
def test_regex_equals_lm_eval(kwargs) -> None:
    assert _ours(filters.RegexFilter, **kwargs) == _lm(extraction.RegexFilter, **kwargs)


def test_regex_examples_spelled_out() -> None:
    """The rules themselves: match number group_select (negative from the end), the first
    non-empty group of a multi-group pattern, stripped; the fallback when nothing matches."""
    got = _ours(filters.RegexFilter, regex_pattern=r"(-?[$0-9.,]{2,})|(-?[0-9]+)", group_select=-1)
    assert got == [["72", "8"], ["$1,234.", "[invalid]"], ["[invalid]", "[invalid]"], ["[invalid]", "1,000,000"]]


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (filters.TakeFirstFilter, selection.TakeFirstFilter),
        (filters.MajorityVoteFilter, selection.MajorityVoteFilter),
        (filters.LowercaseFilter, transformation.LowercaseFilter),
        (filters.UppercaseFilter, transformation.UppercaseFilter),
        (filters.WhitespaceFilter, extraction.WhitespaceFilter),
    ],
)
def test_selection_and_transformation_equal_lm_eval(ours, theirs) -> None:
    assert _ours(ours) == _lm(theirs)


def test_majority_vote_and_take_first_k() -> None:
    votes = [["7", "8", "7"], ["a", "b"], ["x"]]
    assert list(filters.MajorityVoteFilter().apply(votes, [{}] * 3)) == [["7"], ["a"], ["x"]]
    assert list(filters.MajorityVoteFilter().apply(votes, [{}] * 3)) == list(
        selection.MajorityVoteFilter().apply(votes, [{}] * 3)
    )
    assert list(filters.TakeKFilter(k=2).apply(votes[:2], [{}] * 2)) == [["7", "8"], ["a", "b"]]
    with pytest.raises(ValueError, match="take_first_k needs 3 responses"):
        filters.TakeKFilter(k=3).apply([["a", "b"]], [{}])


def test_map_equals_lm_eval() -> None:
    mapping = {"Natalia sold 48/2 = 24 clips.\n#### 72": 1, "": 0}
    assert _ours(filters.MapFilter, mapping_dict=mapping, default_value=-1) == _lm(
        transformation.MapFilter, mapping_dict=mapping, default_value=-1
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"regex_pattern": r"(\([A-Z]\))"},
        {"regex_pattern": r"(\([A-Z]\))", "ignore_case": True, "ignore_punctuation": True},
        {"regex_pattern": r"#### (\-?[0-9\.\,]+)", "regexes_to_ignore": [","]},
    ],
)
def test_multi_choice_regex_equals_lm_eval(kwargs) -> None:
    answers = [["It is (C)."], ["I think Guilty of Romance"], ["answer: B"], ["paris, surely"], ["none"]]
    docs = [DOCS[0]] * len(answers)
    ours = list(filters.MultiChoiceRegexFilter(**kwargs).apply(answers, docs))
    theirs = list(extraction.MultiChoiceRegexFilter(**kwargs).apply(answers, docs))
    assert ours == theirs
    assert ours[1] == ["(C)"]  # the longest choice text wins over its prefix "Guilty"


def test_pipeline_runs_steps_in_order() -> None:
    (pipeline,) = filters.build_pipelines(
        [
            {
                "name": "flexible",
                "filter": [
                    {"function": "remove_whitespace"},
                    {"function": "lowercase"},
                    {"function": "regex", "regex_pattern": "answer: (\\w+)"},
                    {"function": "majority_vote"},
                    {"function": "take_first"},
                ],
            }
        ],
        Path("t.yaml"),
        "t",
    )
    assert pipeline.name == "flexible"
    assert pipeline.apply([[" Answer: Yes", "answer: no ", "ANSWER: YES"]], [{}]) == ["yes"]
    assert filters.build_pipelines(None, Path("t.yaml"), "t") == (filters.DEFAULT_PIPELINE,)


def test_helper_class_from_function_is_a_step() -> None:
    class Reverse(filters.Filter):
        def __init__(self, suffix: str = "") -> None:
            self.suffix = suffix

        def apply(self, resps, docs):
            return [[r[::-1] + self.suffix for r in rs] for rs in resps]

    (pipeline,) = filters.build_pipelines(
        [{"name": "rev", "filter": [{"function": Reverse, "suffix": "!"}, {"function": "take_first"}]}],
        Path("t.yaml"),
        "t",
    )
    assert pipeline.apply([["abc"]], [{}]) == ["cba!"]


@pytest.mark.parametrize(
    ("filter_list", "message"),
    [
        ([{"name": "x", "filter": [{"function": "decontaminate"}]}], "function 'decontaminate' is not supported"),
        ([{"filter": [{"function": "take_first"}]}], "each entry needs a 'name' and a 'filter' list"),
        ([{"name": "x", "filter": [{"regex_pattern": "a"}]}], "each step needs a 'function'"),
        (
            [{"name": "x", "filter": [{"function": "take_first"}]}, {"name": "x", "filter": []}],
            "two filters are named 'x'",
        ),
    ],
)
def test_bad_filter_list_names_the_problem(filter_list, message) -> None:
    with pytest.raises(LmevalError, match=message) as info:
        filters.build_pipelines(filter_list, Path("tasks/t.yaml"), "my_task")
    assert "tasks/t.yaml: task 'my_task': filter_list" in str(info.value)
