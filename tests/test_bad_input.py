"""Bad input stops the run with one `ERROR:` line on stderr and pytest's usage-error exit code
(4), saying what is wrong and where, before any model loads.

Runs that could load a model name one that does not exist (`hf:/nonexistent/...`): had the
plugin tried to load it, the error would be a different one, and "loading" would be printed.
"""

from __future__ import annotations

import pytest
from benchmark_source import benchmark_source  # noqa: E402
from mirror import ROOT
from quiz_project import TASK_YAML, error_lines, run, write_quiz, write_rows

NO_MODEL = ("--model", "hf:/nonexistent/model-that-must-not-load")
KV_HINT = "(expected e.g. dtype=float32,revision=main)"


def _one_error(result: pytest.RunResult) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    errors = error_lines(result)
    assert len(errors) == 1, result.errlines
    assert "loading" not in result.stdout.str()
    return errors[0]


def _task(pytester: pytest.Pytester, name: str, text: str) -> None:
    folder = pytester.path / "evals" / name
    folder.mkdir(parents=True)
    (folder / f"{name}.yaml").write_text(text)
    (folder / f"test_{name}.py").write_text(benchmark_source(name, name))


def test_unknown_task_suggests_close_matches(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(
        str(ROOT / "evals"), "-p", "no:cacheprovider", "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
        *NO_MODEL, "--tasks", "arc_easy,mmlu_anatmy",
    )  # fmt: skip
    error = _one_error(result)
    assert error.startswith("ERROR: unknown task 'mmlu_anatmy' (did you mean: mmlu_anatomy")


def test_unknown_task_in_a_project(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    result = run(pytester, "evals", "--data-dir", "data", *NO_MODEL, "--tasks", "quiz_c")
    assert _one_error(result) == "ERROR: unknown task 'quiz_c' (did you mean: quiz_b, quiz_a, quiz?)"


def test_wildcard_matching_nothing(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    result = run(pytester, "evals", "--data-dir", "data", *NO_MODEL, "--tasks", "trivia_*")
    assert _one_error(result) == "ERROR: --tasks 'trivia_*' matches no task or group"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("hgf:gpt2", "ERROR: --model 'hgf:gpt2': unknown backend 'hgf' (did you mean: hf?) (backends: hf, vllm, *"),
        ("gpt2", "ERROR: --model 'gpt2': expected BACKEND:NAME, e.g. hf:EleutherAI/pythia-160m (backends: hf, *"),
    ],
)
def test_unknown_backend(pytester: pytest.Pytester, model: str, message: str) -> None:
    write_quiz(pytester.path)
    result = run(pytester, "evals", "--data-dir", "data", "--model", model)
    error = _one_error(result)
    assert error.startswith(message.removesuffix("*")), error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("dtype", "ERROR: --model-args: 'dtype' is not key=value (expected e.g. dtype=float32,revision=main)"),
        (
            "dtype=float32,=main",
            "ERROR: --model-args: '=main' is not key=value (expected e.g. dtype=float32,revision=main)",
        ),
        ("revision=a,revision=b", "ERROR: --model-args: 'revision' is given twice"),
    ],
)
def test_malformed_model_args(pytester: pytest.Pytester, args: str, message: str) -> None:
    write_quiz(pytester.path)
    result = run(pytester, "evals", "--data-dir", "data", *NO_MODEL, "--model-args", args)
    assert _one_error(result) == message


def test_yaml_syntax_error_names_file_and_line(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    _task(pytester, "broken", "task: broken\noutput_type: multiple_choice\ntest_split: test\n  doc_to_text: oops\n")
    result = run(pytester, "evals", "--data-dir", "data", *NO_MODEL, "--tasks", "quiz_a")
    path = (pytester.path / "evals" / "broken" / "broken.yaml").resolve()
    assert _one_error(result) == f"ERROR: {path}:4: invalid YAML: mapping values are not allowed here"


def test_missing_data_says_which_file_and_how_to_provide_it(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    (pytester.path / "data" / "local" / "quiz" / "b" / "test.jsonl").unlink()
    result = run(pytester, "evals", "--data-dir", "data", *NO_MODEL)
    error = _one_error(result)
    assert error.startswith("ERROR: task 'quiz_b': missing data: looked for data/local/quiz/b/test.jsonl (or .parquet)")
    assert "point --data-dir/LMEVAL_DATA_DIR at a mirror that has it" in error


def test_missing_data_dir(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    result = run(pytester, "evals", "--data-dir", "nowhere", *NO_MODEL)
    assert _one_error(result).startswith("ERROR: --data-dir 'nowhere': no such folder (")


def test_template_naming_a_missing_field_says_which_field_and_document(pytester: pytest.Pytester) -> None:
    text = TASK_YAML.format(name="hinted", subset="h", version="1.0").replace(
        'doc_to_text: "Q: {{question}}\\nA:"', 'doc_to_text: "Q: {{question}} ({{hint}})\\nA:"'
    )
    assert "{{hint}}" in text
    _task(pytester, "hinted", text)
    rows = [{"question": f"q{i}", "hint": "h", "choices": ["x", "y"], "label": 0} for i in range(5)]
    del rows[3]["hint"]
    write_rows(pytester.path / "data" / "local" / "quiz" / "h" / "test.jsonl", rows)
    (pytester.path / "pytest.ini").write_text("[pytest]\nlmeval_evals_dir = evals\n")
    result = run(pytester, "evals", "--data-dir", "data", *NO_MODEL)
    assert (
        _one_error(result)
        == "ERROR: task 'hinted': doc_to_text failed on document 3: 'hint' is undefined in the document"
    )
    # documents 0-2 are fine: selecting only them runs
    ok = run(pytester, "evals", "--data-dir", "data", "--model", "dummy:d", "--limit", "3", "--output-path", "out")
    assert ok.ret == 0
    ok.assert_outcomes(passed=3)


def test_documents_selected_without_a_model(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    result = run(pytester, "evals", "--data-dir", "data", "-k", "quiz_b")
    assert _one_error(result) == (
        "ERROR: 3 documents selected but no model given: "
        "pass --model BACKEND:NAME (e.g. --model hf:EleutherAI/pythia-160m)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--limit", "0"), "ERROR: --limit '0': must be positive"),
        (("--limit", "2.5"), "ERROR: --limit '2.5': a count must be a whole number"),
        (("--limit", "many"), "ERROR: --limit 'many': expected N documents or a fraction"),
        (("--batch-size", "0"), "ERROR: --batch-size '0': must be at least 1, or 'auto'"),
        (("--num-fewshot", "three"), "ERROR: --num-fewshot 'three': expected a whole number"),
    ],
)
def test_bad_numbers(pytester: pytest.Pytester, args: tuple[str, ...], message: str) -> None:
    write_quiz(pytester.path)
    result = run(pytester, "evals", "--data-dir", "data", *NO_MODEL, *args)
    assert _one_error(result) == message


# -- a model that cannot load: one line after collection, before anything loads --------------------
def _model_error(pytester: pytest.Pytester, model: str, *args: str) -> str:
    write_quiz(pytester.path)
    return _one_error(run(pytester, "evals", "--data-dir", "data", "--model", model, *args))


def test_local_model_path_that_does_not_exist(pytester: pytest.Pytester) -> None:
    assert (
        _model_error(pytester, "hf:/no/such/path")
        == "ERROR: --model hf:/no/such/path: no such file or folder: /no/such/path"
    )


def test_hub_name_not_in_the_local_cache_with_the_hub_offline(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(pytester.path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _model_error(pytester, "hf:org/missing") == (
        f"ERROR: --model hf:org/missing: org/missing is not in the local Hugging Face cache ({pytester.path}/hf/hub) "
        "and the hub is offline (HF_HUB_OFFLINE=1): download it where the hub is reachable (hf download org/missing) "
        "and point HF_HOME at that cache, or pass a local folder"
    )


def test_hub_name_the_hub_does_not_have(pytester: pytest.Pytester, monkeypatch) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    def not_found(*args, **kwargs):
        raise RepositoryNotFoundError.__new__(RepositoryNotFoundError)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(HfApi, "model_info", not_found)
    assert _model_error(pytester, "hf:org/missing") == (
        "ERROR: --model hf:org/missing: org/missing not found on the Hugging Face hub (a private one needs HF_TOKEN), "
        "and there is no such local folder"
    )


def test_hub_that_cannot_be_reached_falls_back_to_the_local_cache(pytester: pytest.Pytester, monkeypatch) -> None:
    from huggingface_hub import HfApi

    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(pytester.path / "hf"))
    monkeypatch.setattr(HfApi, "model_info", unreachable)
    error = _model_error(pytester, "hf:org/missing")
    assert error.startswith("ERROR: --model hf:org/missing: org/missing is not in the local Hugging Face cache (")
    assert "and the hub cannot be reached: download it where the hub is reachable" in error


def test_gguf_file_not_in_the_folder_lists_the_ones_there(pytester: pytest.Pytester, tmp_path) -> None:
    (tmp_path / "b.Q4.gguf").write_bytes(b"GGUF")
    (tmp_path / "a.Q8.gguf").write_bytes(b"GGUF")
    assert _model_error(pytester, f"hf:{tmp_path}", "--model-args", "gguf_file=c.gguf") == (
        f"ERROR: --model-args gguf_file='c.gguf': no such file in {tmp_path} (its .gguf files: a.Q8.gguf, b.Q4.gguf)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            "peft=/no/such/adapter",
            "ERROR: --model-args peft='/no/such/adapter': no such file or folder: /no/such/adapter",
        ),
        (
            "dtype=float33",
            "ERROR: --model-args dtype='float33': not a dtype the hf backend knows; "
            "use one of auto, float32, float16, half, bfloat16",
        ),
    ],
)
def test_bad_model_args_of_a_model_that_exists(pytester: pytest.Pytester, tmp_path, args: str, message: str) -> None:
    (tmp_path / "config.json").write_text("{}")  # would fail to load, if anything tried
    assert _model_error(pytester, f"hf:{tmp_path}", "--model-args", args) == message
