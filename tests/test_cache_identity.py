"""API answers are cached under the model identity the server states (`model`, plus
`system_fingerprint`): a server that states one is cached, a changed fingerprint behind the same
name gets fresh answers, and a server that states nothing is not cached unless --cache-dir asks;
the terminal says which applies."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai_server import ModelService, OpenAIServer
from quiz_project import read_json, write_quiz


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> ModelService:
    from tiny_model import build_tiny_model

    return ModelService(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture
def server(service: ModelService):
    with OpenAIServer(service, "tiny") as srv:
        yield srv


def _run(pytester: pytest.Pytester, server: OpenAIServer, out: str, *extra: str) -> pytest.RunResult:
    tokenizer = server.service.tokenizer.name_or_path
    result = pytester.runpytest(
        "evals", "-p", "no:cacheprovider", "--data-dir", "data", "--model", "local-completions:tiny",
        "--model-args", f"base_url={server.url},tokenizer={tokenizer},backoff=0.01", "--output-path", out, *extra,
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()[-3000:]
    return result


def _from_cache(result: pytest.RunResult) -> int:
    line = next(x for x in result.outlines if x.startswith("lmeval: ") and " from cache, " in x)
    return int(line.split(": ")[2].split(" from cache")[0])


def _cache_line(result: pytest.RunResult) -> str:
    return next(x for x in result.outlines if x.startswith("lmeval: cache: "))


def test_a_server_that_states_its_model_is_cached_under_it(
    pytester: pytest.Pytester, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_quiz(pytester.path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(pytester.path / "xdg"))  # the default cache folder, not --cache-dir
    server.system_fingerprint = "fp_one"
    first = _run(pytester, server, "one")
    assert _from_cache(first) == 0
    assert (
        _cache_line(first)
        == "lmeval: cache: answers cached under the model the server states: tiny (system_fingerprint fp_one)"
    )
    assert (pytester.path / "xdg" / "pytest-lmeval" / "responses.sqlite").is_file()
    record = read_json(pytester.path / "one" / "results.json")["config"]["model_fingerprint"]
    assert record["server_identity"] == ["tiny", "fp_one"]
    assert "Authorization" not in str(record) and record["backend"] == "local-completions"

    assert _from_cache(_run(pytester, server, "two")) == 21

    server.system_fingerprint = "fp_two"  # other weights behind the same name
    assert _from_cache(_run(pytester, server, "three")) == 0


def test_a_server_that_states_nothing_is_not_cached_by_default(
    pytester: pytest.Pytester, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_quiz(pytester.path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(pytester.path / "xdg"))
    server.states_model = False
    first = _run(pytester, server, "one")
    assert _cache_line(first) == (
        f"lmeval: cache: answers not cached: the server at {server.url}/completions states no model identity "
        "(pass --cache-dir to cache them anyway)"
    )
    assert _from_cache(_run(pytester, server, "two")) == 0

    asked = _run(pytester, server, "three", "--cache-dir", "cache")
    assert _cache_line(asked) == (
        f"lmeval: cache: the server at {server.url}/completions states no model identity; "
        "cached anyway, as --cache-dir asks"
    )
    assert _from_cache(_run(pytester, server, "four", "--cache-dir", "cache")) == 21
    assert Path(pytester.path / "cache" / "responses.sqlite").is_file()


def test_under_xdist_the_summary_and_results_say_how_the_workers_cached(
    pytester: pytest.Pytester, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The controller answers nothing itself: the line and the fingerprint are the workers'."""
    write_quiz(pytester.path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(pytester.path / "xdg"))
    server.system_fingerprint = "fp_x"
    result = _run(pytester, server, "one", "-n", "2")
    assert _cache_line(result) == (
        "lmeval: cache: answers cached under the model the server states: tiny (system_fingerprint fp_x)"
    )
    record = read_json(pytester.path / "one" / "results.json")["config"]["model_fingerprint"]
    assert record["server_identity"] == ["tiny", "fp_x"]
