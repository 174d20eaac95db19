"""The vLLM backend on CPU, against the stand-in module tests/fakes/vllm (vLLM's offline API,
computed with transformers): the same log-likelihoods and generations as `hf:`, everything in
one generate call, shared contexts scored together, the engine arguments vLLM receives,
data-parallel replicas on their own GPUs, and a clear message when vLLM is not installed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from tiny_model import build_tiny_model

from pytest_lmeval.core.errors import LmevalError
from pytest_lmeval.core.requests import Request
from pytest_lmeval.models.backend import RequestFailed
from pytest_lmeval.models.hf.backend import HFBackend
from pytest_lmeval.models.spec import ModelSpec
from pytest_lmeval.models.tokens import LmTokenizer

FAKES = Path(__file__).parent / "fakes"
LL_TOL = 1e-4
HF_MAX = 40
VLLM_MAX = HF_MAX + 2  # vLLM keeps max_length - 1 input tokens, the first never scored: hf's windows

CONTEXTS = [
    "Question: What is the capital of France?\nAnswer:",
    "A B C D yes no true false. Answer:",
    "Science questions about plants, animals, water, energy and the sun. " * 4,  # truncated
    "The quick brown fox jumps over the lazy ",
    "",
]
CONTINUATIONS = [" A", " B", " C", " D", " yes", " Paris", " the lazy dog", "fox jumps"]


def _drop_vllm_modules() -> None:
    for name in [n for n in sys.modules if n == "vllm" or n.startswith("vllm.")]:
        del sys.modules[name]


@pytest.fixture
def fake_vllm(monkeypatch):
    """tests/fakes on sys.path for this test (and for processes it spawns)."""
    monkeypatch.syspath_prepend(str(FAKES))
    _drop_vllm_modules()
    from vllm.entrypoints import llm

    yield llm
    _drop_vllm_modules()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def hf(tiny: Path) -> HFBackend:
    return HFBackend(ModelSpec("hf", str(tiny), {"max_length": HF_MAX}), device="cpu", batch_size=1)


def _vllm(tiny: Path, **args):
    from pytest_lmeval.models.vllm.backend import VLLMBackend

    args = {"max_model_len": VLLM_MAX, **args}
    return VLLMBackend(ModelSpec("vllm", str(tiny), args), device=None, batch_size="auto")


def _requests() -> list[Request]:
    return [Request.loglikelihood(c, k) for c in CONTEXTS for k in CONTINUATIONS]


def _assert_same(got: list[tuple[float, bool]], want: list[tuple[float, bool]]) -> None:
    assert [g[0] for g in got] == pytest.approx([w[0] for w in want], abs=LL_TOL)
    assert [g[1] for g in got] == [w[1] for w in want]


def test_loglikelihoods_equal_hf_in_one_generate_call(fake_vllm, tiny, hf) -> None:
    reqs = _requests()
    backend = _vllm(tiny)
    done: list[int] = []
    got = backend.loglikelihood(reqs, done.append)
    _assert_same(got, hf.loglikelihood(reqs, lambda n: None))
    assert sum(done) == len(reqs)
    assert len(fake_vllm.CALLS) == 1, "every request goes to vLLM in one generate call"
    params = fake_vllm.CALLS[0]["params"]
    shared = [p for p in params if p.logprob_token_ids]
    alone = [p for p in params if p.prompt_logprobs == 1]
    assert len(shared) + len(alone) == len(params)
    # " A" " B" " C" " D" " yes" " Paris" are one token each: one prompt per context answers them all
    tok = LmTokenizer(hf.tokenizer, add_special_tokens=None)
    pairs = [tok.encode_pair(*r.args) for r in reqs]
    contexts = {tuple(c) for c, k in pairs if len(k) == 1 and len(c) + 2 <= VLLM_MAX}
    assert len(shared) == len(contexts) and max(len(p.logprob_token_ids) for p in shared) >= 4
    assert len(params) < len(reqs)
    assert all(p.temperature == 0 and p.max_tokens == 1 for p in params)


def test_every_request_on_its_own_without_logprob_token_ids(fake_vllm, tiny, hf, monkeypatch) -> None:
    import vllm

    older = tuple(f for f in vllm.SamplingParams.__struct_fields__ if f != "logprob_token_ids")
    monkeypatch.setattr(vllm.SamplingParams, "__struct_fields__", older)
    reqs = _requests()
    backend = _vllm(tiny)
    assert backend.info()["shared_context_scoring"] is False
    _assert_same(backend.loglikelihood(reqs, lambda n: None), hf.loglikelihood(reqs, lambda n: None))
    assert len(fake_vllm.CALLS[0]["params"]) == len(reqs)
    assert all(p.prompt_logprobs == 1 for p in fake_vllm.CALLS[0]["params"])


def test_rolling_equals_hf(fake_vllm, tiny, hf) -> None:
    texts = ["The quick brown fox jumps over the lazy dog. " * 6, "Science questions.", ""]
    reqs = [Request.loglikelihood_rolling(t) for t in texts]
    got = _vllm(tiny).loglikelihood_rolling(reqs, lambda n: None)
    assert got == pytest.approx(hf.loglikelihood_rolling(reqs, lambda n: None), abs=LL_TOL)
    assert got[2] == 0.0 and len(fake_vllm.CALLS) == 1


def test_generation_equals_hf_greedy(fake_vllm, tiny, hf) -> None:
    reqs = [Request.generate_until(c, {"until": [".", "\n"], "max_gen_toks": 12}) for c in CONTEXTS[:4]]
    reqs.append(Request.generate_until("Question:", {"until": "zzz", "max_gen_toks": 5, "do_sample": False}))
    # for generation both keep max_length - max_gen_toks context tokens: the same max length
    got = _vllm(tiny, max_model_len=HF_MAX).generate_until(reqs, lambda n: None)
    assert got == hf.generate_until(reqs, lambda n: None)
    (call,) = fake_vllm.CALLS
    first = call["params"][0]
    assert first.stop == [".", "\n", "<|endoftext|>"] and first.max_tokens == 12 and first.temperature == 0.0
    assert first.skip_special_tokens is False
    assert max(len(p) for p in call["prompts"]) == HF_MAX - 12, "contexts leave room for max_gen_toks"


def test_generation_argument_vllm_does_not_know(fake_vllm, tiny) -> None:
    req = Request.generate_until("Q:", {"until": ["\n"], "typical_decoding": 0.9})
    with pytest.raises(RequestFailed, match="typical_decoding are not vLLM SamplingParams"):
        _vllm(tiny).generate_until([req], lambda n: None)


def test_engine_arguments(fake_vllm, tiny) -> None:
    backend = _vllm(tiny, tensor_parallel_size=1, gpu_memory_utilization=0.5, dtype="bfloat16", enforce_eager=True)
    (init,) = fake_vllm.INITS
    assert init["model"] == str(tiny)
    assert init["enable_prefix_caching"] is True
    assert init["gpu_memory_utilization"] == 0.5 and init["dtype"] == "bfloat16" and init["max_model_len"] == VLLM_MAX
    assert init["seed"] == 1234 and init["trust_remote_code"] is False and init["enforce_eager"] is True
    assert backend.max_length == VLLM_MAX
    _vllm(tiny, max_model_len=None, enable_prefix_caching=False)
    assert fake_vllm.INITS[1]["enable_prefix_caching"] is False
    with pytest.raises(LmevalError, match="max_length or max_model_len, not both"):
        _vllm(tiny, max_length=64)


def test_data_parallel_replicas_on_their_own_gpus(fake_vllm, tiny, hf, monkeypatch, tmp_path) -> None:
    log = tmp_path / "fake_vllm.jsonl"
    monkeypatch.setenv("FAKE_VLLM_LOG", str(log))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,4,5,6")
    with pytest.raises(LmevalError, match="needs 6 GPUs; 4 visible"):
        _vllm(tiny, data_parallel_size=3, tensor_parallel_size=2)
    backend = _vllm(tiny, data_parallel_size=2, tensor_parallel_size=2)
    try:
        reqs = _requests()
        _assert_same(backend.loglikelihood(reqs, lambda n: None), hf.loglikelihood(reqs, lambda n: None))
    finally:
        backend.runner.close()
    events = [json.loads(line) for line in log.read_text().splitlines()]
    inits = [e for e in events if e["event"] == "init"]
    assert sorted(e["cuda_visible_devices"] for e in inits) == ["3,4", "5,6"]
    assert all(e["tensor_parallel_size"] == 2 for e in inits)
    runs = [e for e in events if e["event"] == "generate"]
    assert len({e["pid"] for e in runs}) == 2 and len(runs) == 2
    assert not fake_vllm.INITS, "no engine in the controlling process"


def test_pytest_run_with_vllm_equals_hf(fake_vllm, pytester, tiny) -> None:
    from test_api_backend import N_DOCS, _lls, _project

    _project(pytester.path)
    common = ["evals", "-p", "no:cacheprovider", "--data-dir", "data", "--log-samples", "--no-cache"]
    hf_run = pytester.runpytest(*common, "--model", f"hf:{tiny}", "--output-path", "hf")
    vllm_run = pytester.runpytest(*common, "--model", f"vllm:{tiny}", "--output-path", "vllm")
    assert vllm_run.ret == 0, vllm_run.stdout.str()[-2000:]
    vllm_run.stdout.fnmatch_lines([f"*{N_DOCS} passed*"])
    want, got = _lls(pytester.path / "hf"), _lls(pytester.path / "vllm")
    for doc_id, lls in want.items():
        assert got[doc_id] == pytest.approx(lls, abs=LL_TOL)
    results = [json.loads((pytester.path / d / "results.json").read_text()) for d in ("hf", "vllm")]
    assert results[1]["results"] == results[0]["results"] and hf_run.ret == 0
    assert results[1]["model_info"]["engine_args"]["enable_prefix_caching"] is True


def test_without_vllm_the_error_says_how_to_install(pytester) -> None:
    assert "vllm" not in sys.modules
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest("--model", "vllm:Qwen/Qwen2.5-7B")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    expected = "--model vllm:Qwen/Qwen2.5-7B: vLLM is not installed: pip install 'pytest-lmeval[vllm]'"
    assert expected in result.stderr.str()


def test_a_hub_model_loads_the_commit_the_cache_is_keyed_by(fake_vllm, tiny: Path, tmp_path: Path, monkeypatch) -> None:
    """With the hub offline, vLLM loads the folder of the commit the cache key names (online it
    gets that commit as `revision`), not whatever the moving ref points at later."""
    import shutil

    from pytest_lmeval.engine.fingerprint import fingerprint_parts

    repo = tmp_path / "hub" / "models--org--tiny"
    shutil.copytree(tiny, repo / "snapshots" / ("3" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("3" * 40)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from pytest_lmeval.models.vllm.backend import VLLMBackend

    backend = VLLMBackend(ModelSpec("vllm", "org/tiny", {"max_model_len": VLLM_MAX}), device=None, batch_size="auto")
    assert backend.engine_args["model"] == str(repo / "snapshots" / ("3" * 40))
    assert fingerprint_parts(ModelSpec("vllm", "org/tiny", {}))["commit"] == "3" * 40


def test_inputs_cut_to_the_model_length_are_recorded(fake_vllm, tiny) -> None:
    """What the run's truncation count reads (features/truncation.py): each request whose input
    kept only its last tokens, with its length and what was kept."""
    backend = _vllm(tiny, max_model_len=16)
    long, short = Request.loglikelihood("word " * 40, " end"), Request.loglikelihood("a few words", " end")
    backend.loglikelihood([long, short], lambda n: None)
    assert list(backend.truncated) == [long]
    tokens, kept = backend.truncated[long]
    assert kept == 15 and tokens > 15
    prompt = Request.generate_until("word " * 40, {"until": ["\n"], "max_gen_toks": 4})
    backend.generate_until([prompt], lambda n: None)
    assert backend.truncated[prompt][1] == 12
