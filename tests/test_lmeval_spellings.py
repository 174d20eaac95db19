"""lm-eval's spellings of the options (`--model_args`, `--num_fewshot`, `--batch_size auto:N`,
four-part `--seed`, `--trust_remote_code`, `--use_cache`, ...) run the same evaluation as ours,
and lm-eval's names that pytest owns (`--verbosity`, `--metadata`) get one line naming ours."""

from __future__ import annotations

import pytest
from quiz_project import read_json, write_quiz

from pytest_lmeval.core.errors import LmevalError
from pytest_lmeval.run.option_values import collision_hints, parse_batch_size, parse_seed

COMMON = ("-p", "no:cacheprovider", "--model", "dummy:x", "--data-dir", "data", "--tasks", "quiz_a", "--limit", "3")


def _config(pytester: pytest.Pytester, out: str, *args: str) -> tuple[dict, pytest.RunResult]:
    result = pytester.runpytest(*COMMON, *args)
    assert result.ret == 0, result.outlines[-20:]
    data = read_json(pytester.path / out / "results.json")
    prompt = {k: data.get(k) for k in ("system_instruction", "fewshot_as_multiturn", "chat_template")}
    return {**data["config"], **prompt}, result


def test_lmeval_spellings_give_the_kebab_case_run(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    (pytester.path / "more").mkdir()
    ours, _ = _config(
        pytester, "a",
        "--model-args", "delay=0,trust_remote_code=true", "--num-fewshot", "1", "--batch-size", "auto",
        "--gen-kwargs", "temperature=0", "--output-path", "a", "--log-samples", "--system-instruction", "Be brief.",
        "--include-path", "more", "--cache-dir", "cache_a", "--seed", "7",
    )  # fmt: skip
    theirs, result = _config(
        pytester, "b",
        "--model_args", "delay=0", "--trust_remote_code", "--num_fewshot", "1", "--batch_size", "auto:4",
        "--max_batch_size", "64", "--gen_kwargs", "temperature=0", "--output_path", "b", "--log_samples",
        "--system_instruction", "Be brief.", "--include_path", "more", "--use_cache", "cache_b", "--seed", "0,1,2,7",
    )  # fmt: skip
    assert theirs == ours
    assert ours["model_args"] == "delay=0,trust_remote_code=true" and ours["fewshot_seed"] == 7
    assert (pytester.path / "b" / "samples").is_dir() and (pytester.path / "cache_b").is_dir()
    result.stdout.fnmatch_lines(["lmeval: --max_batch_size is accepted and ignored*"])


def test_seed_and_batch_size_values() -> None:
    assert parse_seed("5") == 5
    assert parse_seed("0,1234,1234,99") == 99
    assert parse_seed("None,None,None,None") == 1234
    assert parse_batch_size("auto:8") == "auto" and parse_batch_size("16") == 16
    with pytest.raises(LmevalError):
        parse_seed("1,2")
    with pytest.raises(LmevalError):
        parse_batch_size("auto:x")


def test_collision_hints_name_ours() -> None:
    assert collision_hints(["--metadata", '{"max_seq_lengths": [4096]}']) == [
        "lm-eval's --metadata is pytest-metadata's here (--metadata KEY VALUE); pass task settings with --task-args"
    ]
    assert collision_hints(["--metadata", "key", "value", "--verbosity=2"]) == []  # pytest's own meanings
    assert len(collision_hints(["--verbosity", "DEBUG"])) == 1


def test_lmeval_metadata_prints_one_line(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    result = pytester.runpytest_subprocess(*COMMON, "--metadata", '{"a": 1}')
    lines = [line for line in result.errlines if line.startswith("lmeval: lm-eval's --metadata")]
    assert len(lines) == 1, result.errlines
