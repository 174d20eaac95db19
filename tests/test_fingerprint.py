"""The cache key changes whenever the answers could: a hub name whose `refs/main` moves to other
weights gets fresh answers (with the hub offline, as on this machine), a pinned revision keeps
its own, and a changed tokenizer file changes the key of a local folder."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from quiz_project import read_json, write_quiz

from pytest_lmeval.engine.fingerprint import ANSWER_CODE_VERSION, fingerprint, fingerprint_parts
from pytest_lmeval.models.spec import ModelSpec

SHA1 = "1" * 40
SHA2 = "2" * 40


def _snapshot(home: Path, sha: str, source: Path) -> Path:
    """`org/tiny` at commit `sha` in a Hugging Face cache under `home`, and refs/main moved to it."""
    repo = home / "hub" / "models--org--tiny"
    shutil.copytree(source, repo / "snapshots" / sha)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(sha)
    return repo / "snapshots" / sha


def _other_weights(source: Path, folder: Path) -> Path:
    """The same model with other weights (what a push of a new checkpoint looks like)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, folder)
    weights = load_file(folder / "model.safetensors")
    torch.manual_seed(1)
    save_file({k: v + 0.5 * torch.randn_like(v) for k, v in weights.items()}, folder / "model.safetensors")
    return folder


def _run(pytester: pytest.Pytester, out: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "-p", "no:cacheprovider", "evals", "--data-dir", "data", "--model", "hf:org/tiny", "--cache-dir", "cache",
        "--output-path", out, "--log-samples", *args,
    )  # fmt: skip


def _loglikelihoods(out: Path) -> list:
    rows = [json.loads(line) for line in (out / "samples" / "quiz_a.jsonl").read_text().splitlines()]
    return [r["resps"] for r in rows]


def _stats_line(result: pytest.RunResult) -> str:
    return next(line for line in result.outlines if line.startswith("lmeval: ") and " from cache, " in line)


def test_hub_model_gets_fresh_answers_when_refs_main_moves(
    pytester: pytest.Pytester, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_quiz(pytester.path)
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _snapshot(home, SHA1, tiny_model)

    first = _run(pytester, "one")
    assert first.ret == 0, first.stdout.str()
    assert " 0 from cache, 21 computed" in _stats_line(first)
    record = read_json(pytester.path / "one" / "results.json")["config"]["model_fingerprint"]
    assert record["commit"] == SHA1 and record["resolved_offline"] is True
    assert record["answer_code_version"] == ANSWER_CODE_VERSION

    again = _run(pytester, "again")
    assert " 21 from cache, 0 computed" in _stats_line(again)

    # The owner pushes other weights under the same name: refs/main now names another commit.
    _snapshot(home, SHA2, _other_weights(tiny_model, tmp_path / "other"))
    moved = _run(pytester, "moved")
    assert moved.ret == 0, moved.stdout.str()
    assert " 0 from cache, 21 computed" in _stats_line(moved)
    assert _loglikelihoods(pytester.path / "moved") != _loglikelihoods(pytester.path / "one")
    assert read_json(pytester.path / "moved" / "results.json")["config"]["model_fingerprint"]["commit"] == SHA2

    pinned = _run(pytester, "pinned", "--model-args", f"revision={SHA1}")
    assert " 21 from cache, 0 computed" in _stats_line(pinned)
    assert _loglikelihoods(pytester.path / "pinned") == _loglikelihoods(pytester.path / "one")


def test_hub_model_loads_the_commit_it_is_keyed_by(tiny_model: Path, tmp_path: Path, monkeypatch) -> None:
    """The backend loads the weights of the commit the key names: refs/main's, or the pinned revision's."""
    from safetensors.torch import load_file

    from pytest_lmeval.models.hf.backend import HFBackend

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _snapshot(tmp_path, SHA1, tiny_model)
    _snapshot(tmp_path, SHA2, _other_weights(tiny_model, tmp_path / "other"))

    def head(revision: str | None) -> torch.Tensor:
        args = {"dtype": "float32"} | ({"revision": revision} if revision else {})
        return HFBackend(ModelSpec("hf", "org/tiny", args), device="cpu", batch_size=1).model.lm_head.weight

    for revision, sha in ((None, SHA2), (SHA1, SHA1), ("main", SHA2)):
        stored = load_file(tmp_path / "hub" / "models--org--tiny" / "snapshots" / sha / "model.safetensors")
        assert torch.equal(head(revision), stored["lm_head.weight"]), revision


def test_local_tokenizer_files_are_part_of_the_key(tiny_model: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_model, tmp_path / "model")
    spec = ModelSpec("hf", str(folder), {})
    before = fingerprint(spec)
    assert fingerprint_parts(spec)["tokenizer_sha256"]
    (folder / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    assert fingerprint(spec) != before

    # a tokenizer given elsewhere is hashed too
    tok = shutil.copytree(tiny_model, tmp_path / "tok")
    with_tok = ModelSpec("hf", str(folder), {"tokenizer": str(tok)})
    key = fingerprint(with_tok)
    config = json.loads((tok / "tokenizer_config.json").read_text())
    config["model_max_length"] = 77
    (tok / "tokenizer_config.json").write_text(json.dumps(config))
    assert fingerprint(with_tok) != key


def test_key_ignores_secrets_and_where_the_model_runs(tiny_model: Path) -> None:
    base = ModelSpec("hf", str(tiny_model), {"dtype": "float32"})
    moved = ModelSpec("hf", str(tiny_model), {"dtype": "float32", "device_map": "auto", "token": "hf_abcdefghijkl"})
    assert fingerprint(base) == fingerprint(moved)
    assert "hf_abcdefghijkl" not in json.dumps(fingerprint_parts(moved))
    assert fingerprint(base) != fingerprint(ModelSpec("hf", str(tiny_model), {"dtype": "bfloat16"}))


def test_hf_dtype_names_match_the_backend() -> None:
    from pytest_lmeval.models.hf.backend import _DTYPES
    from pytest_lmeval.models.hub import DTYPE_NAMES

    assert set(DTYPE_NAMES) == set(_DTYPES)


def test_a_local_files_hash_is_kept_on_disk_until_the_file_changes(tmp_path: Path, monkeypatch) -> None:
    """Weights are hashed by content once, not in every run: the digest is stored under the
    file's inode, size and times, and any write (even one that puts the mtime back) hashes again."""
    from pytest_lmeval.engine import fingerprint as cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    weights = tmp_path / "model" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"a" * 4096)
    real_open = Path.open

    def unreadable(path: Path, *args, **kwargs):
        if path.name == weights.name:
            raise AssertionError("read again")
        return real_open(path, *args, **kwargs)

    # just written: within the window where a second write may keep the same times, not stored
    first = cache._file_identity([weights])
    with monkeypatch.context() as m:
        m.setattr(Path, "open", unreadable)
        with pytest.raises(AssertionError, match="read again"):
            cache._file_identity([weights])

    monkeypatch.setattr(cache, "_SETTLED_S", 0.0)  # settled: stored, and a new process reads no byte of it
    assert cache._file_identity([weights]) == first
    with monkeypatch.context() as m:
        m.setattr(Path, "open", unreadable)
        assert cache._file_identity([weights]) == first
    assert list((tmp_path / "xdg" / "pytest-lmeval" / "file-digests").iterdir())

    # the same size and the old mtime put back: the status-change time still moved
    mtime = weights.stat().st_mtime_ns
    time.sleep(0.05)  # past the kernel's timestamp tick (the racy window is off in this test)
    weights.write_bytes(b"b" * 4096)
    os.utime(weights, ns=(mtime, mtime))
    assert cache._file_identity([weights]) != first
