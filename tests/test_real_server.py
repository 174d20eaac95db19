"""The API backends and the judge against a real OpenAI-compatible server nobody here wrote:
`transformers serve` (transformers' `serving` extra), serving the tiny test model with a chat
template of its own. tests/openai_server.py stays for the faults a real server cannot be made
to produce; these tests catch what that one would accept and a real server refuses.

- chat generation through `local-chat-completions` gives the texts `hf:` gives under the same
  chat template (`--apply-chat-template`);
- the server as the judge of a judged task: every judging prompt answered (no `"stop": []`,
  which it answers with HTTP 400), replies read, the rerun served from the cache;
- `local-completions` scoring on a server that gives no log-probabilities stops with one line
  saying so;
- the server killed mid-run: the run stops with one line, its results marked partial.

Skipped where the serving extra is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tiny_model import build_tiny_model


def _serving_missing() -> str | None:
    try:
        from transformers.utils.import_utils import is_serve_available
    except ImportError as exc:
        return f"transformers cannot be imported: {exc}"
    if not is_serve_available():
        return "transformers' serving extra is not installed (pip install 'transformers[serving]')"
    if importlib.util.find_spec("transformers.cli.transformers") is None:
        return "this transformers has no `transformers serve` CLI (transformers.cli.transformers)"
    return None


pytestmark = pytest.mark.skipif(_serving_missing() is not None, reason=_serving_missing() or "")

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
START_TIMEOUT = 180.0


class ServedModel:
    """`transformers serve FOLDER` on a free localhost port, in a process of its own; its log
    lines are read as they come (`on_line` sees each)."""

    def __init__(self, folder: Path, on_line: Callable[[str], None] | None = None) -> None:
        self.folder = folder
        self.on_line = on_line
        self.lines: list[str] = []
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_UPDATE_CHECK": "1",
            "OMP_NUM_THREADS": "1",
            "CUDA_VISIBLE_DEVICES": "",
        }
        cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(folder),
               "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if self.on_line is not None:
                self.on_line(line)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"transformers serve exited ({self.proc.returncode}):\n" + "\n".join(self.lines[-30:]))
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        pytest.fail("transformers serve did not answer /health in time:\n" + "\n".join(self.lines[-30:]))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)

    def answered(self, endpoint: str) -> int:
        return sum(1 for line in self.lines if f'"POST /v1/{endpoint} HTTP/1.1" 200' in line)


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Llama (tests/tiny_model.py) with a chat template: the server needs one
    for /v1/chat/completions, `--apply-chat-template` renders the same one for `hf:`."""
    from transformers import AutoTokenizer

    folder = build_tiny_model(tmp_path_factory.mktemp("served") / "tiny-chat")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def served(chat_model: Path) -> Iterator[ServedModel]:
    server = ServedModel(chat_model)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


QUESTIONS = [
    ("What is the capital of France?", "Paris"),
    ("What jumps over the lazy dog?", "the fox"),
    ("Is water wet?", "yes"),
    ("What gives plants energy?", "the sun"),
    ("Name an animal.", "a fox"),
    ("Is the sun a star?", "true"),
]
GEN_BENCH = """
import pytest_lmeval as lm

ROWS = [{"question": f"{q} ({i})" if i else q, "answer": a} for i in range(REPEAT) for q, a in QUESTIONS]
qa = lm.generate("qa", data=lm.rows(ROWS), prompt="Question: {question}\\nAnswer:", target="answer",
                 until=["\\n"], max_tokens=MAX_TOKENS)


@lm.benchmark(qa)
def test_qa(doc):
    doc.score()
"""


def _gen_project(pytester: pytest.Pytester, *, repeat: int = 1, max_tokens: int = 12) -> None:
    source = GEN_BENCH.replace("QUESTIONS", repr(QUESTIONS)).replace("REPEAT", str(repeat))
    pytester.makepyfile(test_qa=source.replace("MAX_TOKENS", str(max_tokens)))


def _run(pytester: pytest.Pytester, model: str, args: str, out: str, *extra: str) -> pytest.RunResult:
    return pytester.runpytest(
        "test_qa.py", "-p", "no:cacheprovider", "--model", model, "--model-args", args, "--output-path", out,
        "--log-samples", *extra,
    )  # fmt: skip


def _samples(path: Path) -> dict[int, dict]:
    return {s["doc_id"]: s for s in map(json.loads, path.read_text().splitlines())}


def test_chat_generation_equals_hf(pytester: pytest.Pytester, served: ServedModel, chat_model: Path) -> None:
    _gen_project(pytester)
    hf = _run(pytester, f"hf:{chat_model}", "dtype=float32", "hf", "--apply-chat-template", "--no-cache")
    assert hf.ret in (0, 1), hf.stdout.str()[-2000:]
    args = f"base_url={served.url},max_retries=2,backoff=0.2"
    api = _run(pytester, f"local-chat-completions:{chat_model}", args, "api", "--cache-dir", "cache")
    assert api.ret == hf.ret, api.stdout.str()[-3000:]
    api.stdout.fnmatch_lines([f"lmeval: cache: answers cached under the model the server states: {chat_model}"])
    want, got = (_samples(pytester.path / run / "samples" / "qa.jsonl") for run in ("hf", "api"))
    assert len(want) == len(QUESTIONS) and got.keys() == want.keys()
    for doc_id, sample in want.items():
        assert got[doc_id]["resps"] == sample["resps"], doc_id
    assert any(s["resps"][0][0] for s in want.values()), "some answers should be non-empty"
    assert served.answered("chat/completions") >= len(QUESTIONS)
    # a fully cached rerun sends only the identity probe
    before = served.answered("chat/completions")
    again = _run(pytester, f"local-chat-completions:{chat_model}", args, "again", "--cache-dir", "cache")
    again.stdout.fnmatch_lines(["lmeval: * requests (* unique): * from cache, 0 computed*"])
    assert served.answered("chat/completions") == before + 1


JUDGED_BENCH = """
import pytest_lmeval as lm

ROWS = [{"question": q, "answer": a, "reply": a} for q, a in QUESTIONS]
# the tiny random judge says "true" and "no" as whole words in some replies
judged = lm.generate("judged", data=lm.rows(ROWS), prompt="{question}\\n{reply}", target="answer",
                     metrics=[lm.judge("judge", verdicts={"true": 1.0, "no": 0.0}, retries=1)])


@lm.benchmark(judged)
def test_judged(doc):
    doc.score()
"""


def test_the_real_server_as_judge(pytester: pytest.Pytester, served: ServedModel, chat_model: Path) -> None:
    """Judging prompts are sent without stop sequences: with `"stop": []` every one was a 400
    and every document unscored as 'the judge gave no answer'."""
    pytester.makepyfile(test_judged=JUDGED_BENCH.replace("QUESTIONS", repr(QUESTIONS)))
    judge = ["--judge-model", f"local-chat-completions:{chat_model}", "--judge-concurrency", "2",
             "--judge-model-args", f"base_url={served.url},max_gen_toks=16,max_retries=1"]  # fmt: skip

    def run(out: str) -> pytest.RunResult:
        return pytester.runpytest(
            "test_judged.py", "-p", "no:cacheprovider", "--model", "dummy:d", "--output-path", out, "--log-samples",
            "--cache-dir", "cache", *judge,
        )  # fmt: skip

    first = run("first")
    assert first.ret in (0, 1), first.stdout.str()[-3000:]
    first.stdout.fnmatch_lines(["lmeval judge: * requests (* unique): 0 from cache, * computed; *"])
    doc = json.loads((pytester.path / "first" / "results.json").read_text())
    reasons = [e["reason"] for e in doc.get("not_scored", [])]
    assert not [r for r in reasons if "gave no answer" in r], reasons  # every judging prompt answered
    assert all(r.startswith("judge 'judge': no verdict") for r in reasons), reasons
    judged = [s["judged"]["judge"] for s in _samples(pytester.path / "first" / "samples" / "judged.jsonl").values()]
    assert judged and all(j["replies"] and j["score"] in (0.0, 1.0) for j in judged)
    assert len(judged) + len(reasons) == len(QUESTIONS)
    again = run("again")
    again.stdout.fnmatch_lines(["lmeval judge: * requests (* unique): * from cache, 0 computed; *"])
    redone = json.loads((pytester.path / "again" / "results.json").read_text())
    assert redone["results"] == doc["results"]


MC_BENCH = """
import pytest_lmeval as lm

ROWS = [{"q": "What is the capital of France?", "choices": ["Paris", "the sun"], "label": 0},
        {"q": "Is water wet?", "choices": ["yes", "no"], "label": 0}]
mc = lm.multiple_choice("mc", data=lm.rows(ROWS), prompt="Question: {q}\\nAnswer:", choices="choices", target="label")


@lm.benchmark(mc)
def test_mc(doc):
    doc.score()
"""


def test_completions_without_logprobs_stop_with_one_line(
    pytester: pytest.Pytester, served: ServedModel, chat_model: Path
) -> None:
    """transformers serve ignores `echo` and `logprobs` and leaves `logprobs` out of its
    completions: scoring stops at once, saying so (it was `KeyError: 'logprobs'`)."""
    pytester.makepyfile(test_mc=MC_BENCH)
    # it takes prompts as text only (token ids are a 400: "prompt must be a string")
    args = f"base_url={served.url},tokenizer={chat_model},tokenized_requests=false,max_retries=1"
    result = pytester.runpytest("test_mc.py", "-p", "no:cacheprovider", "--no-cache", "--output-path", "out",
                                "--model", f"local-completions:{chat_model}", "--model-args", args)  # fmt: skip
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()[-3000:]
    out = result.stdout.str()
    stopped = [line for line in result.outlines if line.startswith("lmeval: stopped at")]
    assert len(stopped) == 1, out[-3000:]
    assert f"the server at {served.url}/completions returns no log-probabilities" in stopped[0]
    assert "KeyError" not in out and "Traceback" not in out


def test_server_killed_mid_run(pytester: pytest.Pytester, chat_model: Path) -> None:
    """The server dies (SIGKILL) after a few answers: the run stops with one line naming the
    document and the connection error, writes what it scored, marked partial, and exits 2."""
    answered = 0
    killed = threading.Event()

    def on_line(line: str) -> None:
        nonlocal answered
        if '"POST /v1/chat/completions HTTP/1.1" 200' in line:
            answered += 1
            if answered == 4:  # the identity probe, then three documents
                server.kill()
                killed.set()

    server = ServedModel(chat_model, on_line)
    try:
        server.wait_ready()
        _gen_project(pytester, repeat=8, max_tokens=12)  # 48 documents, 48 requests, one at a time
        args = f"base_url={server.url},num_concurrent=1,max_retries=1,backoff=0.1"
        result = _run(pytester, f"local-chat-completions:{chat_model}", args, "out", "--no-cache")
    finally:
        server.stop()
    assert killed.is_set()
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()[-3000:]
    stopped = [line for line in result.outlines if line.startswith("lmeval: stopped at")]
    assert len(stopped) == 1, result.stdout.str()[-3000:]
    assert "lmeval: stopped at a generate_until request of document qa-" in stopped[0]
    assert "local-chat-completions server error" in stopped[0] and "gave up after 2 attempts" in stopped[0]
    doc = json.loads((pytester.path / "out" / "results.json").read_text())
    assert doc["partial"] is True
    scored = len(_samples(pytester.path / "out" / "samples" / "qa.jsonl"))
    assert 3 <= scored < len(QUESTIONS) * 4  # (the server died after 3)
    assert len(doc["not_scored"]) == len(QUESTIONS) * 8 - scored
    assert "Traceback" not in result.stdout.str()
