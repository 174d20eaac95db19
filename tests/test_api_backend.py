"""The OpenAI-compatible backends against a real HTTP server (tests/openai_server.py) serving
the tiny model: same log-likelihoods and generations as `hf:`, the same scores through a pytest
run, identical results under injected faults, a clear stop on permanent ones, bounded
concurrency, a server pool, and no API key in anything written."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from benchmark_source import benchmark_source  # noqa: E402
from openai_server import ModelService, OpenAIServer
from tiny_model import build_tiny_model

from pytest_lmeval.core.errors import LmevalError
from pytest_lmeval.core.requests import Request
from pytest_lmeval.models.api.chat import LocalChatCompletions
from pytest_lmeval.models.api.completions import LocalCompletions, OpenAICompletions
from pytest_lmeval.models.api.http import ApiClient, Call, CallsFailed, RetryPolicy, parse_retry_after
from pytest_lmeval.models.backend import RequestFailed
from pytest_lmeval.models.hf.backend import HFBackend
from pytest_lmeval.models.spec import ModelSpec, redact_args, redact_args_text, redact_url, redact_urls

LL_TOL = 1e-4
HF_MAX = 40  # hf scores with up to 40 tokens of input; the API keeps max_length - 1 tokens
API_MAX = HF_MAX + 2  # including the one token that is never scored: the same windows as hf

CONTEXTS = [
    "Question: What is the capital of France?\nAnswer:",
    "The quick brown fox jumps over the lazy",
    "Science questions about plants, animals, water, energy and the sun. " * 4,  # truncated
    "A B C D yes no true false ",  # trailing space moves to the continuation
    "",  # empty context: the prefix token stands in
]
CONTINUATIONS = [" Paris", " dog.", " the sun", "yes", "The quick brown fox"]
ROLLING = ["The quick brown fox jumps over the lazy dog. " * 6, "Science questions.", ""]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def service(tiny: Path) -> ModelService:
    return ModelService(tiny)


@pytest.fixture
def server(service: ModelService):
    with OpenAIServer(service, "tiny") as srv:
        yield srv


@pytest.fixture(scope="module")
def hf(tiny: Path) -> HFBackend:
    return HFBackend(ModelSpec("hf", str(tiny), {"max_length": HF_MAX}), device="cpu", batch_size=1)


def _api(cls, url: str, tiny: Path, **args):
    args = {"base_url": url, "tokenizer": str(tiny), "max_length": API_MAX, "backoff": 0.01, **args}
    return cls(ModelSpec(cls.__name__, "tiny", args), device=None, batch_size="auto")


def _ll_requests(hf: HFBackend) -> list[Request]:
    reqs = [Request.loglikelihood(c, k) for c in CONTEXTS for k in CONTINUATIONS]
    # continuations the model itself would write, so that some answers are greedy
    for ctx in CONTEXTS[:2]:
        greedy = hf.generate_until([Request.generate_until(ctx, {"until": [], "max_gen_toks": 3})], lambda n: None)
        reqs.append(Request.loglikelihood(ctx, greedy[0]))
    return reqs


@pytest.mark.parametrize("concurrency,batch", [(1, 1), (4, 3)])
def test_loglikelihoods_equal_hf(server, tiny, hf, concurrency, batch) -> None:
    reqs = _ll_requests(hf)
    api = _api(LocalCompletions, server.url, tiny, num_concurrent=concurrency, batch_size=batch)
    done: list[int] = []
    got = api.loglikelihood(reqs, done.append)
    want = hf.loglikelihood(reqs, lambda n: None)
    assert [g[0] for g in got] == pytest.approx([w[0] for w in want], abs=LL_TOL)
    assert [g[1] for g in got] == [w[1] for w in want]
    assert any(g[1] for g in got), "some continuations should be greedy"
    assert sum(done) == len(reqs)
    assert server.stats.prompts == len(reqs)

    rolling = [Request.loglikelihood_rolling(t) for t in ROLLING]
    got_r = api.loglikelihood_rolling(rolling, lambda n: None)
    assert got_r == pytest.approx(hf.loglikelihood_rolling(rolling, lambda n: None), abs=LL_TOL)
    assert got_r[2] == 0.0


def test_generation_equals_hf_greedy(server, tiny, hf) -> None:
    reqs = [
        Request.generate_until(ctx, {"until": [".", "\n"], "max_gen_toks": 12, "do_sample": False})
        for ctx in CONTEXTS[:4]
    ] + [Request.generate_until("Question:", {"until": ["zzz"], "max_gen_toks": 5})]
    want = hf.generate_until(reqs, lambda n: None)
    completions = _api(LocalCompletions, server.url, tiny, num_concurrent=2)
    assert completions.generate_until(reqs, lambda n: None) == want
    chat = _api(LocalChatCompletions, server.url, tiny)
    assert chat.generate_until(reqs, lambda n: None) == want


def test_faults_are_retried_and_retry_after_honoured(server, tiny, hf) -> None:
    reqs = _ll_requests(hf)[:6]
    clean = _api(LocalCompletions, server.url, tiny).loglikelihood(reqs, lambda n: None)
    server.faults.queue = ["429", "500", "hang", "drop", "malformed"]
    server.faults.hang_seconds = 2.0
    api = _api(LocalCompletions, server.url, tiny, timeout=0.5, num_concurrent=1)
    started = time.perf_counter()
    assert api.loglikelihood(reqs, lambda n: None) == clean
    assert time.perf_counter() - started >= 1.0, "the 429's Retry-After: 1 must be waited for"
    assert server.faults.fired == ["429", "500", "hang", "drop", "malformed"]


def test_client_error_is_not_retried(server, tiny) -> None:
    server.faults.fail_marker = "France"
    server.faults.fail_status = 400
    server.faults.fail_message = "prompt is too long for this model"
    api = _api(LocalCompletions, server.url, tiny, max_retries=3)
    req = Request.loglikelihood(CONTEXTS[0], " Paris")
    with pytest.raises(RequestFailed) as info:
        api.loglikelihood([req], lambda n: None)
    assert info.value.request == req
    assert "HTTP 400" in info.value.reason and "prompt is too long for this model" in info.value.reason
    assert server.stats.requests == 1


def test_retries_run_out_with_the_server_error(server, tiny) -> None:
    server.faults.fail_marker = "France"
    api = _api(LocalCompletions, server.url, tiny, max_retries=2)
    reqs = [Request.loglikelihood(CONTEXTS[1], " dog."), Request.loglikelihood(CONTEXTS[0], " Paris")]
    with pytest.raises(RequestFailed) as info:
        api.loglikelihood(reqs, lambda n: None)
    assert info.value.request == reqs[1]
    assert "HTTP 500" in info.value.reason and "injected permanent failure" in info.value.reason
    assert "gave up after 3 attempts" in info.value.reason
    assert [r for r, _ in info.value.completed] == [reqs[0]]


def test_concurrency_is_bounded(server, tiny) -> None:
    reqs = [Request.loglikelihood(f"{CONTEXTS[0]} {i}", " Paris") for i in range(24)]
    _api(LocalCompletions, server.url, tiny, num_concurrent=3).loglikelihood(reqs, lambda n: None)
    assert 2 <= server.stats.max_in_flight <= 3


def test_pool_of_servers_shares_the_work(service, tiny, hf) -> None:
    reqs = _ll_requests(hf)
    with OpenAIServer(service, "tiny") as a, OpenAIServer(service, "tiny") as b:
        api = _api(LocalCompletions, f"{a.url} | {b.url}/completions", tiny, num_concurrent=4)
        got = api.loglikelihood(reqs, lambda n: None)
        assert a.stats.prompts > 0 and b.stats.prompts > 0
        assert a.stats.prompts + b.stats.prompts == len(reqs)
    assert [g[0] for g in got] == pytest.approx([w[0] for w in hf.loglikelihood(reqs, lambda n: None)], abs=LL_TOL)


def test_chat_backend_refuses_loglikelihood(server, tiny) -> None:
    chat = _api(LocalChatCompletions, server.url, tiny)
    req = Request.loglikelihood("Q:", " A")
    with pytest.raises(RequestFailed, match="cannot answer loglikelihood requests: chat-completion APIs"):
        chat.loglikelihood([req], lambda n: None)
    assert server.stats.requests == 0


def test_retry_policy() -> None:
    policy = RetryPolicy(max_retries=3, backoff=1.0, max_backoff=5.0)
    for attempt, step in [(0, 1.0), (1, 2.0), (2, 4.0), (5, 5.0)]:
        assert step / 2 <= policy.delay(attempt, None) <= step
    assert policy.delay(0, 7.0) == 7.0
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize(
    "args,message",
    [
        ({"api_key": "sk-abcdef123456"}, "API keys are not accepted as arguments"),
        ({"base_url": "http://x/v1", "num_concurent": 4}, "did you mean: num_concurrent"),
        ({}, "base_url is required"),
        ({"base_url": "localhost:8000"}, "is not an http(s) URL"),
        ({"base_url": "http://x/v1/chat/completions"}, "use local-chat-completions"),
        ({"base_url": "http://x/v1", "api_key_env": "LMEVAL_NO_SUCH_VAR"}, "set the LMEVAL_NO_SUCH_VAR environment"),
    ],
)
def test_bad_model_args(tiny, args, message) -> None:
    with pytest.raises(LmevalError) as info:
        LocalCompletions(ModelSpec("local-completions", "tiny", args), device=None, batch_size="auto")
    assert message in str(info.value)
    assert "sk-abcdef123456" not in str(info.value)


def test_openai_needs_a_key(monkeypatch, tiny) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LmevalError, match="set the OPENAI_API_KEY environment variable"):
        spec = ModelSpec("openai-completions", "davinci-002", {"tokenizer": str(tiny)})
        OpenAICompletions(spec, device=None, batch_size=1)


# -- through pytest ------------------------------------------------------------------------------
TASK_YAML = """\
task: mc_task
dataset_path: local/mc
output_type: multiple_choice
test_split: test
doc_to_text: "Question: {{q}}\\nAnswer:"
doc_to_choice: "{{choices}}"
doc_to_target: label
metric_list:
  - metric: acc
  - metric: acc_norm
"""
WORDS = ["Paris", "the sun", "water", "energy", "plants and animals", "yes", "no", "the lazy dog", "fox"]
N_DOCS = 10


def _project(root: Path) -> None:
    (root / "evals" / "mc").mkdir(parents=True)
    (root / "evals" / "mc" / "mc.yaml").write_text(TASK_YAML)
    (root / "evals" / "mc" / "test_mc.py").write_text(benchmark_source("mc", "mc_task"))
    (root / "pytest.ini").write_text("[pytest]\nlmeval_evals_dir = evals\n")
    data = root / "data" / "local" / "mc" / "default"
    data.mkdir(parents=True)
    rows = [
        {
            "q": f"What is the {'quick brown ' * (i % 3)}answer number {i}?",
            "choices": [WORDS[(i + k) % len(WORDS)] for k in range(4)],
            "label": i % 4,
        }
        for i in range(N_DOCS)
    ]
    rows[3]["q"] = "Where?"  # the shortest prompts: the API scores them last
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _run(pytester: pytest.Pytester, model: str, args: str, out: str, *extra: str) -> pytest.RunResult:
    return pytester.runpytest(
        "evals", "-p", "no:cacheprovider", "--model", model, "--model-args", args, "--data-dir", "data",
        "--output-path", out, "--log-samples", *extra,
    )  # fmt: skip


def _lls(out: Path) -> dict[int, list[float]]:
    lines = (out / "samples" / "mc_task.jsonl").read_text().splitlines()
    return {s["doc_id"]: [float(r[0][0]) for r in s["resps"]] for s in map(json.loads, lines)}


def _api_args(url: str, tiny: Path, **extra: object) -> str:
    args = {"base_url": url, "tokenizer": tiny, "num_concurrent": 4, "backoff": 0.01, **extra}
    return ",".join(f"{k}={v}" for k, v in args.items())


def test_pytest_run_scores_equal_hf(pytester, server, tiny) -> None:
    _project(pytester.path)
    hf = _run(pytester, f"hf:{tiny}", "dtype=float32", "hf", "--no-cache")
    assert hf.ret == 0, hf.stdout.str()[-2000:]
    api = _run(pytester, "local-completions:tiny", _api_args(server.url, tiny), "api", "--no-cache")
    assert api.ret == 0, api.stdout.str()[-2000:]
    api.stdout.fnmatch_lines([f"*{N_DOCS} passed*"])
    want, got = _lls(pytester.path / "hf"), _lls(pytester.path / "api")
    assert got.keys() == want.keys()
    for doc_id, lls in want.items():
        assert got[doc_id] == pytest.approx(lls, abs=LL_TOL)
    results = {name: json.loads((pytester.path / name / "results.json").read_text()) for name in ("hf", "api")}
    assert results["api"]["results"] == results["hf"]["results"]
    assert results["api"]["model_info"]["base_url"] == [f"{server.url}/completions"]


def test_pytest_run_identical_under_faults(pytester, server, tiny) -> None:
    _project(pytester.path)
    clean = _run(pytester, "local-completions:tiny", _api_args(server.url, tiny), "clean", "--no-cache")
    assert clean.ret == 0
    server.faults.queue = ["429", "500", "hang", "drop", "malformed", "500"]
    server.faults.hang_seconds = 2.0
    args = _api_args(server.url, tiny, timeout=0.5, num_concurrent=2)
    faulty = _run(pytester, "local-completions:tiny", args, "faulty", "--no-cache")
    assert faulty.ret == 0, faulty.stdout.str()[-2000:]
    assert not server.faults.queue
    results = {n: json.loads((pytester.path / n / "results.json").read_text()) for n in ("clean", "faulty")}
    assert results["faulty"]["results"] == results["clean"]["results"]
    assert _lls(pytester.path / "faulty") == _lls(pytester.path / "clean")


@pytest.mark.parametrize("workers", [None, "2"])
def test_permanent_failure_stops_naming_the_document(pytester, server, tiny, workers) -> None:
    _project(pytester.path)
    server.faults.fail_marker = "Where?"
    server.faults.fail_message = "CUDA out of memory (injected)"
    args = _api_args(server.url, tiny, max_retries=1, num_concurrent=1)
    xdist = ["-n", workers] if workers else []
    failed = _run(pytester, "local-completions:tiny", args, "failed", "--cache-dir", "cache", *xdist)
    assert failed.ret == pytest.ExitCode.INTERRUPTED
    out = failed.stdout.str()
    assert "lmeval: stopped at a loglikelihood request of document mc_task-3" in out
    assert "HTTP 500" in out and "CUDA out of memory (injected)" in out and "gave up after 2 attempts" in out
    partial = json.loads((pytester.path / "failed" / "results.json").read_text())  # what was scored, marked
    assert partial["partial"] and {"id": "mc_task-3", "status": "error"}.items() <= partial["not_scored"][0].items()

    server.faults.fail_marker = None  # the server recovers: a rerun computes only what was missing
    rerun = _run(pytester, "local-completions:tiny", args, "rerun", "--cache-dir", "cache")
    assert rerun.ret == 0, rerun.stdout.str()[-2000:]
    engine = json.loads((pytester.path / "rerun" / "results.json").read_text())["engine"]
    if workers:  # the other worker's share finished; the failing worker's is cached up to the failure
        assert 0 < engine["computed"] < N_DOCS * 4 / 2 + 4
    else:
        assert engine["from_cache"] == N_DOCS * 4 - 4 and engine["computed"] == 4


def test_chat_backend_on_a_multiple_choice_task_says_why(pytester, server, tiny) -> None:
    _project(pytester.path)
    result = _run(pytester, "local-chat-completions:tiny", f"base_url={server.url}", "chat", "--no-cache")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*stopped at a loglikelihood request of document mc_task-*local-chat-completions cannot answer "
         "loglikelihood requests: chat-completion APIs return log-probabilities only for tokens they generate*"]
    )  # fmt: skip


def test_api_key_never_reaches_the_output(pytester, server, tiny, monkeypatch) -> None:
    secret = "sk-test-" + "9f8e7d6c5b4a" * 3
    monkeypatch.setenv("LMEVAL_TEST_KEY", secret)
    server.api_key = secret
    _project(pytester.path)
    out = pytester.path / "out"
    args = _api_args(server.url, tiny, api_key_env="LMEVAL_TEST_KEY")
    reports = ["--junitxml", str(out / "junit.xml")]
    if pytester.parseconfig().pluginmanager.hasplugin("html"):
        reports += ["--html", str(out / "report.html")]
    ok = _run(pytester, "local-completions:tiny", args, "out", "--no-cache", *reports)
    assert ok.ret == 0, ok.stdout.str()[-2000:]
    # the server echoes the key in an error: it is redacted from the stop message too
    server.faults.fail_marker = "Where?"
    server.faults.fail_status = 401
    server.faults.fail_message = f"Incorrect API key provided: {secret}"
    failed = _run(pytester, "local-completions:tiny", args, "out2", "--no-cache")
    assert failed.ret == pytest.ExitCode.INTERRUPTED
    assert "Incorrect API key provided: <redacted>" in failed.stdout.str()
    files = [p for p in pytester.path.rglob("*") if p.is_file() and "data" not in p.parts]
    assert any(p.name == "results.json" for p in files) and any(p.suffix == ".jsonl" for p in files)
    assert (out / "junit.xml").exists() and (out / "report.html").exists() == ("--html" in reports)
    for path in files:
        assert secret not in path.read_text(errors="replace"), path
    assert secret not in ok.stdout.str() + ok.stderr.str() + failed.stdout.str() + failed.stderr.str()


def test_secret_looking_model_args_are_redacted(pytester) -> None:
    _project(pytester.path)
    result = _run(pytester, "dummy:x", "token=hf_abcdefghijklmnop,delay=0,seed_text=sk-live-abcdefgh1234", "out")
    assert result.ret == 0, result.stdout.str()[-2000:]
    text = result.stdout.str() + (pytester.path / "out" / "results.json").read_text()
    assert "hf_abcdefghijklmnop" not in text and "sk-live-abcdefgh1234" not in text
    config = json.loads((pytester.path / "out" / "results.json").read_text())["config"]
    assert config["model_args"] == "token=<redacted>,delay=0,seed_text=<redacted>"
    assert config["model_args_parsed"] == {"token": "<redacted>", "delay": 0, "seed_text": "<redacted>"}


# -- what real servers refuse, and secrets in URLs ------------------------------------------------
def test_test_server_refuses_an_empty_stop_list(server) -> None:
    """As OpenAI's API and transformers serve do (HTTP 400), so a backend sending one fails here."""
    client = ApiClient([f"{server.url}/completions"], headers={}, num_concurrent=1, timeout=30, policy=RetryPolicy(0))
    body = {"model": "tiny", "prompt": "Hi", "max_tokens": 1, "stop": []}
    with pytest.raises(CallsFailed, match=r"HTTP 400 .*Invalid 'stop': empty array"):
        client.run([Call(body, lambda data: data)], lambda i, a: None)


def test_no_empty_stop_list_is_sent(server, tiny, hf) -> None:
    """Generation without stop sequences (a judge's) leaves `stop` out of the request."""
    reqs = [Request.generate_until(ctx, {"until": [], "max_gen_toks": 6}) for ctx in CONTEXTS[:2]]
    reqs.append(Request.generate_until(CONTEXTS[3], {"until": [""], "max_gen_toks": 6}))
    want = hf.generate_until(reqs, lambda n: None)
    for cls in (LocalCompletions, LocalChatCompletions):
        # without a tokenizer there is no EOS text to stop at either: no stop sequence at all
        spec = ModelSpec(cls.__name__, "tiny", {"base_url": server.url, "tokenizer_backend": "none"})
        api = cls(spec, device=None, batch_size="auto")
        assert api.generate_until(reqs, lambda n: None) == want
    assert server.refused == []


def test_completions_without_logprobs_say_so(server, tiny, hf) -> None:
    """A server that leaves `logprobs` out of its completions (transformers serve) stops scoring
    with the reason, in one line, not retried."""
    server.gives_logprobs = False
    api = _api(LocalCompletions, server.url, tiny, max_retries=3)
    with pytest.raises(RequestFailed) as info:
        api.loglikelihood([Request.loglikelihood(CONTEXTS[0], " Paris")], lambda n: None)
    reason = info.value.reason
    assert f"the server at {server.url}/completions returns no log-probabilities" in reason
    assert "echoes the prompt's log-probabilities" in reason and "KeyError" not in reason
    assert "\n" not in reason and server.stats.requests == 1
    gen = [Request.generate_until(CONTEXTS[1], {"until": ["."], "max_gen_toks": 5})]
    assert api.generate_until(gen, lambda n: None) == hf.generate_until(gen, lambda n: None)  # it needs none


def test_probe_retries_as_requests_do(server, tiny) -> None:
    """The identity probe at the start of a run waits for a server still loading (5xx, refused
    connections) under the run's max_retries, not two tries."""
    spec = ModelSpec("local-completions", "tiny", {"base_url": server.url, "max_retries": 4, "backoff": 0.01})
    server.faults.queue = ["500"] * 4
    probe = LocalCompletions.probe(spec, "auto")
    assert probe.error is None and probe.identities == {f"{server.url}/completions": ("tiny", None)}
    server.faults.queue = ["500"] * 3
    spec = ModelSpec("local-completions", "tiny", {"base_url": server.url, "max_retries": 2, "backoff": 0.01})
    assert "gave up after 3 attempts" in (LocalCompletions.probe(spec, "auto").error or "")


def test_probe_waits_for_a_server_that_comes_up(server, tiny) -> None:
    server.faults.die_after = 0
    with pytest.raises(CallsFailed):  # takes it down: connections are refused from now on
        ApiClient([f"{server.url}/completions"], headers={}, num_concurrent=1, timeout=5, policy=RetryPolicy(0)).run(
            [Call({"model": "tiny", "prompt": "x", "max_tokens": 1}, lambda d: d)], lambda i, a: None
        )
    threading.Timer(1.0, server.come_back).start()
    spec = ModelSpec("local-chat-completions", "tiny", {"base_url": server.url, "backoff": 0.3, "max_backoff": 0.5})
    probe = LocalChatCompletions.probe(spec, "auto")
    assert probe.error is None and probe.identities == {f"{server.url}/chat/completions": ("tiny", None)}


SECRET_URLS = [
    ("http://alice:s3cret-pw@host:8000/v1", "http://alice:<redacted>@host:8000/v1"),
    ("https://tok3n-abcdef@host/v1", "https://<redacted>@host/v1"),
    ("https://x.azure.com/v1?api-version=2024&api-key=K3Y9", "https://x.azure.com/v1?api-version=2024&api-key=<redacted>"),
    ("http://h/v1?access_token=T0K&sig=S1G&Signature=S2&password=P&client_secret=C&model=m",
     "http://h/v1?access_token=<redacted>&sig=<redacted>&Signature=<redacted>&password=<redacted>"
     "&client_secret=<redacted>&model=m"),
    ("http://[::1]:8000/v1#token=abc", "http://[::1]:8000/v1#token=<redacted>"),
    ("http://localhost:8000/v1", "http://localhost:8000/v1"),
]  # fmt: skip


@pytest.mark.parametrize("url,shown", SECRET_URLS)
def test_url_secrets_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_urls(f"HTTP 500 from {url}: down.") == f"HTTP 500 from {shown}: down."
    assert redact_urls(f"base_url={url} {url}|{url}") == f"base_url={shown} {shown}|{shown}"


def test_model_args_with_urls_are_redacted() -> None:
    raw = "base_url=http://u:pw1@a/v1 http://b/v1?key=k2|http://c/v1,num_concurrent=2,tokenizer=/m"
    assert redact_args_text(raw) == (
        "base_url=http://u:<redacted>@a/v1 http://b/v1?key=<redacted>|http://c/v1,num_concurrent=2,tokenizer=/m"
    )
    args = {"base_url": "http://u:pw1@a/v1 http://b/v1?token=k2", "num_concurrent": 2, "api_key": "sk-x"}
    assert redact_args(args) == {
        "base_url": "http://u:<redacted>@a/v1 http://b/v1?token=<redacted>",
        "num_concurrent": 2,
        "api_key": "<redacted>",
    }


def test_a_query_string_stays_after_the_endpoint(tiny) -> None:
    spec = ModelSpec("local-completions", "tiny", {"base_url": "http://h/v1/?api-key=K | http://g/v1/completions?x=1"})
    assert LocalCompletions.settings_for(spec, 1).urls == (
        "http://h/v1/completions?api-key=K",
        "http://g/v1/completions?x=1",
    )
    with pytest.raises(LmevalError) as info:
        LocalCompletions.settings_for(ModelSpec("local-completions", "t", {"base_url": "ftp://u:pw9@h/?key=K9"}), 1)
    assert "pw9" not in str(info.value) and "K9" not in str(info.value)


@pytest.mark.parametrize("cache", [["--no-cache"], ["--cache-dir", "c"]])
def test_url_secrets_never_reach_the_output(pytester, server, tiny, cache) -> None:
    """A password in base_url and a key in its query string: in no file written (results.json,
    report.html, JUnit, samples, the cache) and not in the terminal, in a clean run nor in the
    stop message of a failed one."""
    password, key = "pw-" + "5e6f7a8b" * 3, "qk-" + "1a2b3c4d" * 3
    _project(pytester.path)
    url = server.url.replace("http://", f"http://bob:{password}@") + f"?api-key={key}&v=1"
    out = pytester.path / "out"
    args = _api_args(url, tiny)
    ok = _run(pytester, "local-completions:tiny", args, "out", *cache, "--junitxml", str(out / "junit.xml"))
    assert ok.ret == 0, ok.stdout.str()[-2000:]
    ok.stdout.fnmatch_lines(
        ["*lmeval: model local-completions:tiny (base_url=http://bob:<redacted>@*api-key=<redacted>&v=1*"]
    )
    results = json.loads((out / "results.json").read_text())
    shown = server.url.replace("http://", "http://bob:<redacted>@") + "/completions?api-key=<redacted>&v=1"
    assert results["model_info"]["base_url"] == [shown]
    server.faults.fail_marker, server.faults.fail_status = "Where?", 400
    failed = _run(pytester, "local-completions:tiny", args, "out2", "--no-cache")
    assert failed.ret == pytest.ExitCode.INTERRUPTED
    assert f"HTTP 400 from {shown}" in failed.stdout.str()
    files = [p for p in pytester.path.rglob("*") if p.is_file() and "data" not in p.parts]
    assert {"results.json", "report.html", "junit.xml"} <= {p.name for p in files}
    assert any(p.suffix == ".sqlite" for p in files) == ("c" in cache)
    for path in files:
        text = path.read_bytes().decode(errors="replace")
        assert password not in text and key not in text, path
    terminal = ok.stdout.str() + ok.stderr.str() + failed.stdout.str() + failed.stderr.str()
    assert password not in terminal and key not in terminal
