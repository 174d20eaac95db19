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
        "lm-eval's --metadata is pytest-metadata's here (--metadata KEY VALUE); pass what tasks read from their "
        "metadata with --task-metadata JSON"
    ]
    assert collision_hints(["--metadata", "key", "value", "--verbosity=2"]) == []  # pytest's own meanings
    assert len(collision_hints(["--verbosity", "DEBUG"])) == 1


def test_lmeval_metadata_prints_one_line(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    result = pytester.runpytest_subprocess(*COMMON, "--metadata", '{"a": 1}')
    lines = [line for line in result.errlines if line.startswith("lmeval: lm-eval's --metadata")]
    assert len(lines) == 1, result.errlines


LOADER = """
import json, pathlib

def load(**kwargs):
    import datasets
    pathlib.Path("calls.jsonl").open("a").write(json.dumps(kwargs, sort_keys=True) + "\\n")
    rows = [{"q": f"{i} plus 2 is", "a": str(i + 2)} for i in range(1, 10)]
    return {"test": datasets.Dataset.from_list(rows[: kwargs["n"]])}
"""


def test_task_metadata_reaches_custom_dataset_loaders_as_lm_evals_metadata(pytester: pytest.Pytester) -> None:
    """lm-eval merges --model_args, then --metadata, into every task's metadata; RULER's loaders
    read the tokenizer and lengths there. --task-metadata is that option (JSON or k=v)."""
    write_quiz(pytester.path)
    evals = pytester.path / "evals"
    evals.mkdir(exist_ok=True)
    (evals / "loader.py").write_text(LOADER)
    (evals / "sums.yaml").write_text(
        "task: sums\ncustom_dataset: !function loader.load\ntest_split: test\noutput_type: generate_until\n"
        'doc_to_text: "{{q}}"\ndoc_to_target: "{{a}}"\nmetadata: {version: 1.0, n: 1}\n'
    )
    base = ("-p", "no:cacheprovider", "--model", "dummy:x", "--model-args", "delay=0", "--tasks", "sums")
    result = pytester.runpytest(*base, "--task-metadata", '{"n": 3, "tokenizer": "gpt2"}', "--output-path", "a")
    result.assert_outcomes(passed=3)
    call = read_json_lines(pytester.path / "calls.jsonl")[-1]
    assert call == {"version": 1.0, "n": 3, "tokenizer": "gpt2", "delay": 0, "config_source": str(evals / "sums.yaml")}
    assert read_json(pytester.path / "a" / "results.json")["config"]["task_metadata"] == {"n": 3, "tokenizer": "gpt2"}
    result = pytester.runpytest(*base, "--task-metadata", "n=2")  # lm-eval's k=v spelling
    result.assert_outcomes(passed=2)
    result = pytester.runpytest(*base)  # the task's own metadata
    result.assert_outcomes(passed=1)
    result = pytester.runpytest(*base, "--task-metadata", "n")
    assert result.ret == 4 and "--task-metadata: 'n' is not key=value" in result.stderr.str()


def read_json_lines(path):
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]
