"""Groups as lm-eval 0.4.13 declares them: members with overrides, keys set at the group level,
inline task definitions, and tasks or tags found by name in lm-eval's own catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_lmeval.core.errors import LmevalError
from pytest_lmeval.tasks.lmeval.catalogue import lm_eval_tasks_dir
from pytest_lmeval.tasks.registry import Registry

BASE = """\
task: {name}
dataset_path: local/x
output_type: multiple_choice
test_split: test
doc_to_text: "{{{{q}}}}"
doc_to_choice: ["a", "b"]
doc_to_target: 0
tag: [small]
"""


def _folder(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "tasks"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_member_and_group_level_overrides(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        {
            "a.yaml": BASE.format(name="a"),
            "b.yaml": BASE.format(name="b"),
            "inner.yaml": "group: inner\ntask: [a, b]\n",
            "outer.yaml": (
                "group: outer\nnum_fewshot: 3\ntask:\n  - group: inner\n    description: 'D: '\n"
                "  - task: b\n    num_fewshot: 7\n"
            ),
        },
    )
    reg = Registry.scan([folder])
    configs = reg.configs_for(["inner"])
    assert {n: c.num_fewshot for n, c in configs.items()} == {"a": None, "b": None}
    with pytest.raises(LmevalError, match="task 'b' is selected twice with different settings"):
        reg.configs_for(["outer"])  # b reached through inner (3 shots) and directly (7)
    (folder / "outer.yaml").write_text(
        "group: outer\nnum_fewshot: 3\ntask:\n  - group: inner\n    description: 'D: '\n"
    )
    configs = Registry.scan([folder]).configs_for(["outer"])
    assert {n: (c.num_fewshot, c.description) for n, c in configs.items()} == {"a": (3, "D: "), "b": (3, "D: ")}
    assert reg.tasks["a"].num_fewshot is None  # the registry's own config is untouched


def test_inline_task_is_namespaced(tmp_path: Path) -> None:
    inline = BASE.format(name="fresh").replace("task: fresh\n", "")
    member = "  - task: fresh\n" + "".join(f"    {line}\n" for line in inline.splitlines())
    folder = _folder(tmp_path, {"a.yaml": BASE.format(name="a"), "g.yaml": f"group: g\ntask:\n  - a\n{member}"})
    reg = Registry.scan([folder])
    assert reg.leaves("g") == ["a", "g::fresh"]
    assert reg.tasks["g::fresh"].doc_to_choice == ["a", "b"]


def test_unknown_member_and_tags(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"a.yaml": BASE.format(name="a"), "g.yaml": "group: g\ntask: [a, nope]\n"})
    reg = Registry.scan([folder])
    assert reg.leaves("small") == ["a"]
    with pytest.raises(LmevalError, match="unknown task 'nope'"):
        reg.leaves("g")


def test_same_name_twice_in_one_folder_is_an_error(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"a.yaml": BASE.format(name="a"), "b.yaml": BASE.format(name="a")})
    with pytest.raises(LmevalError, match="name 'a' is already defined in"):
        Registry.scan([folder])


@pytest.mark.skipif(lm_eval_tasks_dir() is None, reason="lm-eval is not installed")
def test_catalogue_tasks_groups_and_tags_by_name(tmp_path: Path) -> None:
    reg = Registry.scan([_folder(tmp_path, {})], lm_eval_catalogue=True)
    assert "mmlu_anatomy_continuation" not in reg.tasks  # nothing parsed up front
    assert reg.leaves("mmlu_anatomy_continuation") == ["mmlu_anatomy_continuation"]
    assert reg.tasks["mmlu_anatomy_continuation"].source.parts[-3:] == ("mmlu", "continuation", "mmlu_anatomy.yaml")
    stem = reg.leaves("mmlu_stem_continuation")  # a tag set in each task file
    assert len(stem) == 19 and "mmlu_anatomy_continuation" in stem
    assert reg.leaves("bbh_zeroshot")[:2] == ["bbh_zeroshot_boolean_expressions", "bbh_zeroshot_causal_judgement"]
    assert len(reg.leaves("bbh_zeroshot")) == 27
    with pytest.raises(LmevalError, match="unknown task 'no_such_task_anywhere'"):
        reg.leaves("no_such_task_anywhere")
