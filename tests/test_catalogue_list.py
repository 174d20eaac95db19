"""lm-eval's catalogue by name: `--tasks list` (and `list=PATTERN`) shows this project's
benchmarks and the catalogue's groups, tags and tasks; wildcards in --tasks reach catalogue
names; what cannot run is refused in one line naming the feature."""

from __future__ import annotations

import pytest

pytest.importorskip("lm_eval")

from pytest_lmeval.core.errors import LmevalError  # noqa: E402
from pytest_lmeval.tasks.lmeval.catalogue import Catalogue, lm_eval_tasks_dir  # noqa: E402
from pytest_lmeval.tasks.registry import Registry  # noqa: E402


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.scan([], lm_eval_catalogue=True)


def test_names_are_lm_evals_index() -> None:
    import logging

    from lm_eval.tasks import TaskManager

    logging.disable(logging.WARNING)
    try:
        manager = TaskManager()
    finally:
        logging.disable(logging.NOTSET)
    names = Catalogue(lm_eval_tasks_dir()).names()
    assert names["tasks"] == set(manager.all_subtasks)
    assert names["groups"] == set(manager.all_groups)
    assert set(manager.all_tags) <= names["tags"]  # tags set in fragments without a .yaml suffix too


def test_tasks_list_filtered(pytester) -> None:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--tasks", "list=leaderboard_musr*")
    assert result.ret == 0
    out = result.stdout.str()
    assert "lm-eval's catalogue (" in out and "matching 'leaderboard_musr*': 1 groups, 0 tags, 3 tasks" in out
    lines = [ln.strip() for ln in out.splitlines()]
    assert lines.index("Groups:", lines.index("Benchmarks of this project matching 'leaderboard_musr*':") + 1)
    for name in ("leaderboard_musr", "leaderboard_musr_murder_mysteries", "leaderboard_musr_team_allocation"):
        assert name in lines
    assert "leaderboard_bbh" not in lines


def test_tasks_list_shows_ours_and_the_catalogue(pytester) -> None:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--tasks", "list")
    assert result.ret == 0
    lines = [ln.strip() for ln in result.stdout.lines]
    ours = lines.index("Benchmarks of this project:")
    theirs = next(i for i, ln in enumerate(lines) if ln.startswith("lm-eval's catalogue ("))
    assert ours < theirs
    assert any(ln.startswith("arc_easy ") and "allenai/ai2_arc" in ln for ln in lines[ours:theirs])  # evals/
    catalogue = lines[theirs:]
    for name in ("leaderboard", "mmlu_pro", "wmt16-de-en", "leaderboard_ifeval"):
        assert name in catalogue, name


def test_wildcards_reach_catalogue_names(registry) -> None:
    assert registry.resolve("leaderboard_musr_*") == [
        "leaderboard_musr_murder_mysteries",
        "leaderboard_musr_object_placements",
        "leaderboard_musr_team_allocation",
    ]
    # a pattern that matches only tags gives the tags (here: set in a file without a .yaml suffix)
    assert registry.resolve("afrimmlu_tasks_prompt_[12]") == ["afrimmlu_tasks_prompt_1", "afrimmlu_tasks_prompt_2"]
    assert len(registry.leaves("afrimmlu_tasks_prompt_1")) == 18


def test_names_with_parentheses_and_inline_subgroups(registry) -> None:
    assert list(registry.configs_for(["darijammlu_arabic_language_(general)"])) == [
        "darijammlu_arabic_language_(general)"
    ]
    assert len(registry.configs_for(["mmlu_continuation"])) == 57  # its subgroups are declared inline


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("20_newsgroups", r"task '20_newsgroups' is a unitxt recipe"),
        ("chartqa", r"image inputs \(doc_to_image\) are not supported"),
        ("humaneval", r"executes model-written code \(unsafe_code: true\)"),
    ],
)
def test_what_cannot_run_is_one_line(registry, name, message) -> None:
    with pytest.raises(LmevalError, match=message) as info:
        registry.configs_for([name])
    assert "\n" not in str(info.value)


def test_word_index_is_kept_on_disk_until_a_file_changes(tmp_path, monkeypatch) -> None:
    """The catalogue's word index is read from the cache folder on the next run, and built
    again when a file is added or edited: a stale index would hide a task."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "tasks"
    (root / "quiz").mkdir(parents=True)
    (root / "quiz" / "_base").write_text("dataset_path: x/quiz\noutput_type: multiple_choice\n")
    (root / "quiz" / "quiz_a.yaml").write_text("include: _base\ntask: quiz_a\n")
    assert Catalogue(root).candidates("quiz_a") == [root / "quiz" / "quiz_a.yaml"]
    stored = list((tmp_path / "cache" / "pytest-lmeval" / "catalogue-index").iterdir())
    assert len(stored) == 1
    # a fresh process's catalogue reads the stored index, includes and all
    again = Catalogue(root)
    assert again.candidates("multiple_choice") == [root / "quiz" / "quiz_a.yaml"]  # through the include
    assert again._texts is None  # no file was read
    (root / "quiz" / "quiz_b.yaml").write_text("include: _base\ntask: quiz_b\n")
    assert Catalogue(root).candidates("quiz_b") == [root / "quiz" / "quiz_b.yaml"]
    (root / "quiz" / "quiz_a.yaml").write_text("include: _base\ntask: quiz_a_renamed\n")
    assert Catalogue(root).candidates("quiz_a_renamed") == [root / "quiz" / "quiz_a.yaml"]
