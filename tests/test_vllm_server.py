"""The several-nodes recipe against vLLM's own OpenAI server (its CPU build), not a stand-in:
`local-completions` on log-likelihood and generation tasks equals `hf:`; with two servers in
`base_url` the requests spread over both and the results equal one server's; a server killed
mid-run costs nothing but its requests in flight, which go to the other. Run by .ci/run in the
vLLM virtual environment; skipped where vLLM is not installed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_vllm_real import pytestmark  # noqa: F401  (skipped without vLLM)

LL_TOL = 1e-4
GEN_YAML = """\
task: gen_task
dataset_path: local/gen_task
output_type: generate_until
test_split: test
doc_to_text: "{{q}}"
doc_to_target: "{{a}}"
generation_kwargs: {until: ["."], max_gen_toks: 8}
metric_list:
  - metric: exact_match
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VllmServer:
    """`python -m vllm.entrypoints.openai.api_server` on a local port, in a process group of
    its own (the API server and its engine processes), its log kept for counting requests."""

    def __init__(self, model: Path, log: Path, core: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
            "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "float32",
            "--max-model-len", "512", "--enforce-eager", "--kv-cache-memory-bytes", str(1 << 30),
        ]  # fmt: skip
        # Each engine on its own core: by default both bind their threads to the first one, and
        # the busier engine starves the other (measured: 4 requests stuck for a whole run).
        env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": str(core % (os.cpu_count() or 1))}
        self.proc = subprocess.Popen(
            cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, env=env
        )

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as resp:
                    ready = resp.status == 200
            except OSError:
                time.sleep(0.5)
                continue
            if ready:  # its first request with log-probabilities takes 2 s: before the runs time it
                body = json.dumps({"model": "tiny", "prompt": "Hi", "max_tokens": 1, "echo": True, "logprobs": 1})
                body = body.encode()
                request = urllib.request.Request(f"{self.url}/completions", body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=60):
                    return
        raise RuntimeError(f"vLLM server not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def completions(self) -> int:
        return self.log.read_text(errors="replace").count("POST /v1/completions")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"), head_dim=32)


@pytest.fixture(scope="module")
def servers(tiny: Path, tmp_path_factory: pytest.TempPathFactory):
    logs = tmp_path_factory.mktemp("servers")
    pair = [VllmServer(tiny, logs / f"server{i}.log", core=i) for i in range(2)]
    try:
        for server in pair:
            server.wait_ready()
        yield pair
    finally:
        for server in pair:
            server.kill()


def _project(root: Path, n_docs: int) -> Path:
    from test_failures import _project as mc_project

    mc_project(root, n_docs=n_docs)
    folder = root / "evals" / "gen_task"
    folder.mkdir()
    (folder / "gen_task.yaml").write_text(GEN_YAML)
    (folder / "test_gen_task.py").write_text(
        "import pytest_lmeval as lm\n\n\n@lm.benchmark('gen_task')\ndef test_gen(doc):\n    doc.score()\n"
    )
    data = root / "data" / "local" / "gen_task" / "default"
    data.mkdir(parents=True)
    rows = [{"q": f"The quick brown fox number {i} jumps over", "a": "the lazy dog"} for i in range(n_docs // 4 + 1)]
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _run(project: Path, model: str, args: str, out: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "pytest", "evals", "-p", "no:cacheprovider", "--model", model, "--model-args", args,
        "--data-dir", "data", "--output-path", out, "--log-samples", "--no-cache",
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=600)


def _answers(out: Path) -> dict[str, dict[int, list]]:
    found = {}
    for task in ("mc_task", "gen_task"):
        lines = (out / "samples" / f"{task}.jsonl").read_text().splitlines()
        found[task] = {s["doc_id"]: s["resps"] for s in map(json.loads, lines)}
    return found


def _assert_equal(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for doc_id, resps in want["mc_task"].items():
        assert [float(r[0][0]) for r in got["mc_task"][doc_id]] == pytest.approx(
            [float(r[0][0]) for r in resps], abs=LL_TOL
        )
    for doc_id, resps in want["gen_task"].items():  # vLLM holds back a last partial UTF-8 character
        assert [r[0].rstrip("\ufffd") for r in got["gen_task"][doc_id]] == [r[0].rstrip("\ufffd") for r in resps]


def _api_args(tiny: Path, *urls: str) -> str:
    return f"base_url={' '.join(urls)},tokenizer={tiny},num_concurrent=8,max_length=512"


def test_one_server_then_two_equal_hf_and_spread_the_requests(servers, tiny: Path, tmp_path: Path) -> None:
    project = _project(tmp_path, n_docs=24)
    hf = _run(project, f"hf:{tiny}", "dtype=float32,max_length=512", "hf")
    assert hf.returncode == 0, hf.stdout[-3000:]
    one = _run(project, "local-completions:tiny", _api_args(tiny, servers[0].url), "one")
    assert one.returncode == 0, one.stdout[-3000:]
    want = _answers(project / "hf")
    _assert_equal(_answers(project / "one"), want)

    before = [s.completions() for s in servers]
    two = _run(project, "local-completions:tiny", _api_args(tiny, servers[0].url, servers[1].url), "two")
    assert two.returncode == 0, two.stdout[-3000:]
    _assert_equal(_answers(project / "two"), want)
    sent = [s.completions() - b for s, b in zip(servers, before, strict=True)]
    assert min(sent) > 0.25 * sum(sent), f"requests per server: {sent}"
    results = {n: json.loads((project / n / "results.json").read_text()) for n in ("hf", "one", "two")}
    assert results["one"]["results"] == results["two"]["results"]
    assert results["two"]["results"]["mc_task"]["acc,none"] == results["hf"]["results"]["mc_task"]["acc,none"]


def test_a_server_killed_mid_run_leaves_the_other_to_finish(servers, tiny: Path, tmp_path: Path) -> None:
    """Killed with SIGKILL (a node lost): its requests in flight are retried on the other
    server, which is then the only one asked; the run ends whole, equal to `hf:`."""
    project = _project(tmp_path, n_docs=300)
    cmd = [
        sys.executable, "-m", "pytest", "evals", "-p", "no:cacheprovider", "--model", "local-completions:tiny",
        "--model-args", _api_args(tiny, servers[0].url, servers[1].url), "--data-dir", "data",
        "--output-path", "killed", "--log-samples", "--no-cache",
    ]  # fmt: skip
    before = servers[1].completions()
    proc = subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while servers[1].completions() - before < 20 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the server could be killed"
    servers[1].kill()
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    n_gen = 300 // 4 + 1
    assert f"{300 + n_gen} passed" in out, out[-2000:]
    hf = _run(project, f"hf:{tiny}", "dtype=float32,max_length=512", "hf")
    assert hf.returncode == 0, hf.stdout[-3000:]
    _assert_equal(_answers(project / "killed"), _answers(project / "hf"))
