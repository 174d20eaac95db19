"""The command line as a pytest user drives it: `--tasks list`, names, groups and wildcards,
`--limit`, `-k`, `--collect-only` as a dry run that loads no model, and `-x`.

Selection runs against the project's own benchmark folder (evals/, lm-eval's task YAML) with
the shared data mirror; the rest on the quiz project (tests/quiz_project.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from mirror import ROOT, shared_mirror
from quiz_project import run, write_quiz

# A model that fails loudly if anything tries to load it.
NO_MODEL = ("--model", "hf:/nonexistent/model-that-must-not-load")


def _evals(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """A run on the project's own evals/ with its pyproject settings and the shared mirror."""
    data = shared_mirror()
    if data is None:
        pytest.skip("the shared benchmark mirror is not available (set LMEVAL_DATA_DIR)")
    return pytester.runpytest(
        str(ROOT / "evals"), "-p", "no:cacheprovider", "--no-cache", "--rootdir", str(ROOT),
        "-c", str(ROOT / "pyproject.toml"), "--data-dir", str(data), *args,
    )  # fmt: skip


def _ids(result: pytest.RunResult) -> list[str]:
    """Document ids of a `--collect-only -q` listing, in order."""
    return [m.group(1) for line in result.outlines if (m := re.search(r"::test_\w+\[(.+)\]$", line))]


def _lm_eval_mmlu_tag(tag: str) -> list[str]:
    """The subjects lm-eval's own mmlu YAML tags with `tag`."""
    lm_eval = pytest.importorskip("lm_eval")
    folder = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default"
    out = []
    for path in folder.glob("mmlu_*.yaml"):
        data = yaml.safe_load(path.read_text())
        if data.get("tag") == tag:
            out.append(data["task"])
    return sorted(out)


def test_tasks_list_prints_tasks_and_groups(pytester: pytest.Pytester) -> None:
    result = _evals(pytester, "--tasks", "list")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["Groups:", "  mmlu *57 tasks", "  mmlu_stem *19 tasks", "Tasks:"], consecutive=False)
    text = result.stdout.str()
    for task in ("arc_easy", "arc_challenge", "hellaswag", "openbookqa", "piqa", "boolq", "mmlu_anatomy"):
        assert re.search(rf"^  {task} +multiple_choice ", text, re.M), task
    assert "collected" not in text  # it lists and exits: nothing is collected or run


def test_wildcard_selects_both_arc_tasks(pytester: pytest.Pytester) -> None:
    result = _evals(pytester, "--tasks", "arc_*", "--limit", "2", "--collect-only", "-q")
    assert result.ret == 0
    assert _ids(result) == ["arc_easy-0", "arc_easy-1", "arc_challenge-0", "arc_challenge-1"]  # declared order
    assert all(line.startswith("evals/arc/test_arc.py::test_arc[") for line in result.outlines if "::" in line)


def test_group_selects_its_subjects(pytester: pytest.Pytester) -> None:
    result = _evals(pytester, "--tasks", "mmlu_stem", "--limit", "1", "--collect-only", "-q")
    assert result.ret == 0
    ids = _ids(result)
    assert sorted(i.removesuffix("-0") for i in ids) == _lm_eval_mmlu_tag("mmlu_stem_tasks")
    assert len(ids) == 19


def test_k_picks_a_subject(pytester: pytest.Pytester) -> None:
    result = _evals(pytester, "--tasks", "mmlu", "--limit", "3", "-k", "abstract_algebra", "--collect-only", "-q")
    assert result.ret == 0
    assert _ids(result) == [f"mmlu_abstract_algebra-{i}" for i in range(3)]
    result.stdout.fnmatch_lines(["3/171 tests collected (168 deselected)*"])


def test_m_lmeval_selects_the_documents(pytester: pytest.Pytester) -> None:
    """The `lmeval` marker is on every document's item before pytest's -m filter runs (also on
    the items of tasks no collected file runs), so `-m lmeval` keeps them and `-m 'not lmeval'`
    drops them."""
    kept = _evals(pytester, "--tasks", "mmlu_anatomy", "--limit", "2", "-m", "lmeval", "--collect-only", "-q")
    assert kept.ret == 0 and _ids(kept) == ["mmlu_anatomy-0", "mmlu_anatomy-1"]
    dropped = _evals(pytester, "--tasks", "mmlu_anatomy", "--limit", "2", "-m", "not lmeval", "--collect-only", "-q")
    assert _ids(dropped) == []


def test_collect_only_lists_documents_without_loading_a_model(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    result = run(pytester, "evals", "--data-dir", "data", *NO_MODEL, "--collect-only", "-q")
    assert result.ret == 0
    assert _ids(result) == [*(f"quiz_a-{i}" for i in range(5)), *(f"quiz_b-{i}" for i in range(3))]
    assert "evals/quiz/test_quiz.py::test_quiz[quiz_a-0]" in result.outlines
    assert "loading" not in result.stdout.str()
    assert not (pytester.path / "reports").exists()  # a dry run writes no report


def test_collect_only_needs_no_model_at_all(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    result = run(pytester, "evals", "--data-dir", "data", "--collect-only", "-q", "--limit", "2")
    assert result.ret == 0
    assert _ids(result) == ["quiz_a-0", "quiz_a-1", "quiz_b-0", "quiz_b-1"]


def test_limit_n_per_task(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    result = run(pytester, "evals", "--data-dir", "data", "--model", "dummy:d", "--limit", "2", "-v")
    assert result.ret == 0
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_quiz?quiz_a-1? PASSED*", "*test_quiz?quiz_b-1? PASSED*"])
    assert "quiz_a-2" not in result.stdout.str()


def test_tasks_names_one_task_of_a_folder(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    result = run(pytester, "evals", "--data-dir", "data", "--model", "dummy:d", "--tasks", "quiz_b", "--collect-only")
    assert result.ret == 0
    assert _ids(result) == []  # not -q: the tree view
    result.stdout.fnmatch_lines(["*<Function test_quiz[[]quiz_b-2[]]>*"])
    assert "quiz_a" not in result.stdout.str()


def test_x_stops_at_the_first_wrong_answer(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    result = run(
        pytester, "evals", "--data-dir", "data", "--model", "dummy:d", "--item-outcome", "correct", "-x",
        "--output-path", "out",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2, failed=1)  # quiz_a-0 and -1 are right, -2 is wrong
    result.stdout.fnmatch_lines(
        [
            "*quiz_a-2 answered wrong (acc=0, acc_norm=1)",
            "  prompt: Q: Third Greek letter? ⏎ A:",
            "  answer: 'be'",
            "  right:  'gamma!'",
        ]
    )
    assert "pytest_lmeval" not in result.stdout.str()  # no traceback into the plugin's code
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])


def test_item_outcome_correct_fails_only_wrong_answers(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    result = run(pytester, "evals", "--data-dir", "data", "--model", "dummy:d", "--item-outcome", "correct")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=4, failed=4)  # acc is 3/5 and 1/3
