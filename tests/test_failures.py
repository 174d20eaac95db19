"""Failures keep what was finished, and say what was not: each fault as a user meets it.

- an API server that goes down mid-run: the scored documents are written, marked partial, the
  rest listed by id and reason, exit code 2; once it is back a rerun computes only the rest and
  equals an uninterrupted run. With --ignore-errors a request that keeps failing fails its own
  document only, and the rest is scored and gated;
- a checkpoint whose outputs are NaN: that document is reported unscored with the reason and
  left out of every score;
- an xdist worker killed with SIGKILL: its documents are listed as not run, the other worker's
  results and the cache are kept, and a rerun completes from the cache;
- Ctrl-C during the model work: the terminal says how many answers are cached and how to
  resume, and the rerun computes only the rest.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openai_server import ModelService, OpenAIServer
from test_resume import _cached  # rows in the project's response cache

N_DOCS = 10
TASK_YAML = """\
task: {name}
dataset_path: local/{name}
output_type: multiple_choice
test_split: test
doc_to_text: "Question: {{{{q}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
  - metric: acc_norm
"""
WORDS = ["Paris", "the sun", "water", "energy", "plants and animals", "yes", "no", "the lazy dog", "fox"]


def _project(root: Path, n_docs: int = N_DOCS, name: str = "mc_task", odd: dict[int, str] | None = None) -> Path:
    folder = root / "evals" / name
    folder.mkdir(parents=True)
    (folder / f"{name}.yaml").write_text(TASK_YAML.format(name=name))
    (folder / f"test_{name}.py").write_text(
        f"import pytest_lmeval as lm\n\n\n@lm.benchmark({name!r})\ndef test_doc(doc):\n    doc.score()\n"
    )
    (root / "pytest.ini").write_text("[pytest]\nlmeval_evals_dir = evals\n")
    rows = [
        {
            "q": (odd or {}).get(i, f"What is the {'quick brown ' * (i % 3)}answer number {i}?"),
            "choices": [WORDS[(i + k) % len(WORDS)] for k in range(4)],
            "label": i % 4,
        }
        for i in range(n_docs)
    ]
    data = root / "data" / "local" / name / "default"
    data.mkdir(parents=True)
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _results(path: Path) -> dict:
    return json.loads((path / "results.json").read_text())


def _same(a: dict, b: dict) -> None:
    for key in ("results", "n-samples", "configs"):
        assert a[key] == b[key], key


# -- a server that goes down -----------------------------------------------------------------
@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> ModelService:
    from tiny_model import build_tiny_model

    return ModelService(build_tiny_model(tmp_path_factory.mktemp("tiny")))


@pytest.fixture
def server(service: ModelService):
    with OpenAIServer(service, "tiny") as srv:
        yield srv


def _api(pytester: pytest.Pytester, server: OpenAIServer, out: str, *extra: str) -> pytest.RunResult:
    tokenizer = server.service.tokenizer.name_or_path
    args = f"base_url={server.url},tokenizer={tokenizer},num_concurrent=1,max_retries=1,backoff=0.01"
    return pytester.runpytest(
        "evals", "-p", "no:cacheprovider", "--model", "local-completions:tiny", "--model-args", args,
        "--data-dir", "data", "--output-path", out, "--cache-dir", "cache", *extra,
    )  # fmt: skip


def test_a_server_that_goes_down_leaves_partial_results_and_a_rerun_completes_them(pytester, server) -> None:
    _project(pytester.path)
    server.faults.die_after = 22  # of 40 requests, one per HTTP call
    down = _api(pytester, server, "down")
    assert down.ret == pytest.ExitCode.INTERRUPTED
    out = down.stdout.str()
    assert "lmeval: stopped at a loglikelihood request of document mc_task-" in out
    assert "lmeval: PARTIAL RESULTS" in out and "documents not scored" in out
    assert "rerun the same command to compute the rest" in out

    doc = _results(pytester.path / "down")
    assert doc["partial"] is True
    missing = doc["not_scored"]
    scored = doc["n-samples"]["mc_task"]["effective"]
    assert 0 < scored < N_DOCS and scored + len(missing) == N_DOCS
    assert [e["status"] for e in missing].count("error") == 1  # the document whose request failed
    failed = missing[0]
    assert failed["status"] == "error" and "server error" in failed["reason"] and "gave up after 2" in failed["reason"]
    assert f"stopped at a loglikelihood request of document {failed['id']}" in out
    for entry in missing[1:]:
        assert entry["status"] == "not run" and entry["reason"].startswith("the run stopped at a loglikelihood")
    not_run = ", ".join(e["id"] for e in missing[1:])
    assert f"  {failed['id']} (error): {failed['reason']}" in out
    assert f"  {not_run} (not run): {missing[1]['reason']}" in out
    assert "Partial results: " in (pytester.path / "down" / "report.html").read_text()
    down.assert_outcomes(passed=scored, failed=1, skipped=len(missing) - 1)

    server.come_back()
    rerun = _api(pytester, server, "rerun")
    assert rerun.ret == 0, rerun.stdout.str()[-3000:]
    engine = _results(pytester.path / "rerun")["engine"]
    done = doc["engine"]["computed"]  # answered before the server went down: all cached
    assert done >= 20 and engine["from_cache"] == done and engine["computed"] == 40 - done
    assert "PARTIAL" not in rerun.stdout.str() and _results(pytester.path / "rerun")["partial"] is False
    assert _api(pytester, server, "whole", "--no-cache").ret == 0
    _same(_results(pytester.path / "rerun"), _results(pytester.path / "whole"))


def test_ignore_errors_fails_only_the_documents_whose_requests_keep_failing(pytester, server) -> None:
    _project(pytester.path, odd={3: "Where?"})
    server.faults.fail_marker = "Where?"
    server.faults.fail_message = "CUDA out of memory (injected)"
    res = _api(pytester, server, "out", "--ignore-errors", "--threshold", "mc_task:acc>=0.0", "-rf")
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    res.assert_outcomes(passed=N_DOCS - 1 + 1, failed=1)  # 9 documents and the gate
    res.stdout.fnmatch_lines(
        [
            "*_ test_doc[[]mc_task-3[]] _*",
            "local-completions server error: HTTP 500 *CUDA out of memory (injected) (gave up after 2 attempts)",
            "PASS gate[[]mc_task:acc>=0[]]: *",
            "FAILED evals/mc_task/test_mc_task.py::test_doc[[]mc_task-3[]] - NotScored: *",
        ]
    )
    doc = _results(pytester.path / "out")
    assert doc["partial"] is True and doc["n-samples"]["mc_task"]["effective"] == N_DOCS - 1
    assert [(e["id"], e["status"]) for e in doc["not_scored"]] == [("mc_task-3", "error")]
    assert "CUDA out of memory (injected)" in doc["not_scored"][0]["reason"]
    assert [g["passed"] for g in doc["gates"]] == [True]
    # every other request went through: only the failing document's 4 are left for a rerun
    assert doc["engine"]["failed_requests"] == 4 and doc["engine"]["computed"] == 36


OOM_CONFTEST = """\
import torch

from pytest_lmeval.models.dummy import DummyBackend

original = DummyBackend.loglikelihood
calls = []


def loglikelihood(self, requests, progress):
    calls.append(len(requests))
    if len(calls) == 2:  # what the hf backend raises once it cannot halve its batch any more
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
    return original(self, requests, progress)


DummyBackend.loglikelihood = loglikelihood
"""


def test_out_of_memory_at_batch_size_1_stops_with_the_scored_part_written(pytester) -> None:
    """150 documents x 4 choices: the first chunk of 512 answers is computed, the second runs
    out of memory. The 128 documents answered are written, the other 22 listed."""
    _project(pytester.path, n_docs=150)
    conftest = pytester.path / "conftest.py"
    conftest.write_text(OOM_CONFTEST)
    args = ("evals", "-p", "no:cacheprovider", "--model", "dummy:d", "--data-dir", "data", "--cache-dir", "cache")
    res = pytester.runpytest_subprocess(*args, "--output-path", "oom")
    assert res.ret == pytest.ExitCode.INTERRUPTED
    res.stdout.fnmatch_lines(
        ["lmeval: stopped at a loglikelihood request of document mc_task-*: out of memory with no smaller batch "
         "left (CUDA out of memory. Tried to allocate 2.00 GiB (injected))"]
    )  # fmt: skip
    doc = _results(pytester.path / "oom")
    assert doc["partial"] is True and doc["n-samples"]["mc_task"]["effective"] == 128
    assert [e["status"] for e in doc["not_scored"]] == ["error"] + ["not run"] * 21

    conftest.unlink()  # more memory: the rerun computes the second chunk only
    rerun = pytester.runpytest_subprocess(*args, "--output-path", "rerun")
    assert rerun.ret == 0
    again = _results(pytester.path / "rerun")
    assert again["engine"]["from_cache"] == 512 and again["engine"]["computed"] == 600 - 512
    whole = pytester.runpytest_subprocess(*args[:-2], "--no-cache", "--output-path", "whole")
    assert whole.ret == 0
    _same(again, _results(pytester.path / "whole"))


# -- a broken checkpoint ---------------------------------------------------------------------
def test_nan_log_likelihoods_leave_the_document_unscored(pytester, tiny_model: Path) -> None:
    """The embedding of "~" (a byte token only document 2's question contains) is NaN: that
    document's log-likelihoods are NaN, the others' are finite."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = pytester.path / "broken"
    shutil.copytree(tiny_model, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    (bad,) = tok("~")["input_ids"]
    with torch.no_grad():
        model.get_input_embeddings().weight[bad] = float("nan")
    model.save_pretrained(folder)
    _project(pytester.path, n_docs=4, odd={2: "Is ~ a tilde?"})

    res = pytester.runpytest(
        "evals", "-p", "no:cacheprovider", "--no-cache", "--model", f"hf:{folder}", "--device", "cpu",
        "--data-dir", "data", "--output-path", "out", "--log-samples",
    )  # fmt: skip
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    res.assert_outcomes(passed=3, failed=1)
    res.stdout.fnmatch_lines(["*mc_task-2 (error): non-finite log-likelihood (nan) in request 1 of 4*"])
    doc = _results(pytester.path / "out")
    assert doc["partial"] is True
    assert [(e["id"], e["status"]) for e in doc["not_scored"]] == [("mc_task-2", "error")]
    assert doc["not_scored"][0]["reason"].startswith("non-finite log-likelihood (nan)")
    assert doc["n-samples"]["mc_task"]["effective"] == 3
    samples = [
        json.loads(line) for line in (pytester.path / "out" / "samples" / "mc_task.jsonl").read_text().splitlines()
    ]
    assert sorted(s["doc_id"] for s in samples) == [0, 1, 3]
    acc = doc["results"]["mc_task"]["acc,none"]
    assert acc == pytest.approx(sum(s["acc"] for s in samples) / 3)  # a number, the mean of the three


# -- a worker killed -------------------------------------------------------------------------
KILL_CONFTEST = """\
import os
import signal

from pytest_lmeval.models.dummy import DummyBackend


def pytest_configure(config):
    if os.environ.get("LMEVAL_TEST_KILL") and getattr(config, "workerinput", {}).get("workerid") == "gw1":
        original = DummyBackend.loglikelihood
        calls = []

        def loglikelihood(self, requests, progress):
            calls.append(len(requests))
            if len(calls) == 2:  # the first chunk of answers is cached: die now, as kill -9 would
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, requests, progress)

        DummyBackend.loglikelihood = loglikelihood
"""
KILL_DOCS = 300  # x 4 choices: 600 requests a worker, more than one chunk (engine.CHUNK = 512)


def test_a_killed_worker_s_documents_are_not_run_and_a_rerun_completes_from_the_cache(pytester, monkeypatch) -> None:
    pytest.importorskip("xdist")
    _project(pytester.path, n_docs=KILL_DOCS)
    (pytester.path / "conftest.py").write_text(KILL_CONFTEST)

    def run(out: str, *extra: str) -> pytest.RunResult:
        return pytester.runpytest(
            "evals", "-p", "no:cacheprovider", "--model", "dummy:d", "--data-dir", "data", "--output-path", out,
            "-n", "2", *extra,
        )  # fmt: skip

    monkeypatch.setenv("LMEVAL_TEST_KILL", "1")
    killed = run("killed", "--cache-dir", "cache")
    monkeypatch.delenv("LMEVAL_TEST_KILL")
    assert killed.ret == pytest.ExitCode.TESTS_FAILED
    out = killed.stdout.str()
    assert "worker 'gw1' crashed while running 'evals/mc_task/test_mc_task.py::test_doc[mc_task-150]'" in out
    assert "lmeval: PARTIAL RESULTS" in out
    doc = _results(pytester.path / "killed")
    assert doc["partial"] is True and doc["n-samples"]["mc_task"]["effective"] == KILL_DOCS // 2
    missing = doc["not_scored"]
    assert [e["id"] for e in missing] == [f"mc_task-{i}" for i in range(KILL_DOCS // 2, KILL_DOCS)]
    assert {e["status"] for e in missing} == {"not run"}
    assert missing[0]["reason"] == "xdist worker gw1 died while running it"
    assert all(e["reason"].startswith("xdist worker gw1 died (while running mc_task-150)") for e in missing[1:])
    with sqlite3.connect(pytester.path / "cache" / "responses.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 600 + 512  # gw0's shard, gw1's chunk

    rerun = run("rerun", "--cache-dir", "cache")
    assert rerun.ret == 0, rerun.stdout.str()[-3000:]
    again = _results(pytester.path / "rerun")
    assert again["engine"]["from_cache"] == 600 + 512 and again["engine"]["computed"] == 600 - 512
    assert again["partial"] is False
    whole = run("whole", "--no-cache")
    assert whole.ret == 0
    _same(again, _results(pytester.path / "whole"))


# -- Ctrl-C ----------------------------------------------------------------------------------
INT_DOCS = 400  # x 4 choices = 1600 requests: several cache chunks


def _cmd(out: str, delay: float, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "evals", "-p", "no:cacheprovider", "--model", "dummy:slow",
        "--model-args", f"delay={delay}", "--data-dir", "data", "--output-path", out, *extra,
    ]  # fmt: skip


def _start(project: Path, out: str, delay: float) -> subprocess.Popen:
    return subprocess.Popen(
        _cmd(out, delay, "--cache-dir", "cache"), cwd=project, stdout=subprocess.PIPE, text=True,
        # Ctrl-C's default, even where this suite runs as a background job (which ignores SIGINT
        # and hands that on to its children, Python then keeping it ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def _wait_for_answers(project: Path, proc: subprocess.Popen) -> None:
    deadline = time.time() + 60
    while _cached(project) == 0 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("sig", "code", "name"),
    [
        (signal.SIGINT, pytest.ExitCode.INTERRUPTED, "Ctrl-C"),
        (signal.SIGTERM, 143, "SIGTERM"),
        (signal.SIGHUP, 129, "SIGHUP"),
    ],
)
def test_a_stop_signal_keeps_every_answer_writes_partial_results_and_the_rerun_computes_only_the_rest(
    tmp_path: Path, sig: signal.Signals, code: int, name: str
) -> None:
    """Ctrl-C, a CI runner's SIGTERM and a closed terminal's SIGHUP stop the run the same way:
    one line, every finished answer kept, the documents answered scored and written as partial
    results, an exit code that says which signal; the rerun computes only the rest and equals an
    uninterrupted run."""
    project = _project(tmp_path, n_docs=INT_DOCS)
    proc = _start(project, "interrupted", 0.003)
    _wait_for_answers(project, proc)
    proc.send_signal(sig)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == code, stdout[-3000:]
    cached = _cached(project)
    assert 0 < cached < INT_DOCS * 4, "the run should have been interrupted mid-way"
    assert f"lmeval: interrupted ({name}) while the model was answering" in stdout
    assert f"lmeval: interrupted: {cached} answers cached; rerun the same command to resume" in stdout
    assert "Traceback" not in stdout
    partial = _results(project / "interrupted")
    scored = partial["n-samples"]["mc_task"]["effective"] if partial["results"] else 0
    assert partial["partial"] is True and scored <= cached // 4
    assert len(partial["not_scored"]) == INT_DOCS - scored
    assert {e["reason"] for e in partial["not_scored"]} == {f"the run was interrupted ({name}) before it was answered"}

    resumed = subprocess.run(_cmd("resumed", 0.0, "--cache-dir", "cache"), cwd=project, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    engine = _results(project / "resumed")["engine"]
    assert engine["from_cache"] == cached and engine["computed"] == INT_DOCS * 4 - cached
    whole = subprocess.run(_cmd("whole", 0.0, "--no-cache"), cwd=project, capture_output=True, text=True)
    assert whole.returncode == 0
    _same(_results(project / "resumed"), _results(project / "whole"))


def test_a_second_signal_ends_the_run_at_once_and_the_cache_stays_whole(tmp_path: Path) -> None:
    project = _project(tmp_path, n_docs=INT_DOCS)
    proc = _start(project, "twice", 0.02)
    _wait_for_answers(project, proc)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode in (143, -signal.SIGTERM)
    with sqlite3.connect(project / "cache" / "responses.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    cached = _cached(project)
    resumed = subprocess.run(_cmd("resumed", 0.0, "--cache-dir", "cache"), cwd=project, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    assert _results(project / "resumed")["engine"]["computed"] == INT_DOCS * 4 - cached


def test_a_fault_that_would_repeat_fails_only_the_documents_that_asked(tmp_path: Path) -> None:
    """An exception from the model that is no transient server fault (a bug, a request it
    cannot take) fails the documents whose requests raise it, with its one line; every other
    document is scored, every answer kept, and nothing suggests rerunning the same command."""
    project = _project(tmp_path, odd={3: "A poison question?", 7: "Another poison?"})
    cmd = _cmd("out", 0.0, "--cache-dir", "cache")
    cmd[cmd.index("delay=0.0")] = "fail_on=poison"
    res = subprocess.run(cmd, cwd=project, capture_output=True, text=True)
    assert res.returncode == pytest.ExitCode.TESTS_FAILED, res.stdout[-3000:]
    doc = _results(project / "out")
    assert doc["n-samples"]["mc_task"]["effective"] == N_DOCS - 2
    assert [(e["doc_id"], e["status"]) for e in doc["not_scored"]] == [(3, "error"), (7, "error")]
    assert "the model raised RuntimeError: dummy backend told to fail on 'poison'" in doc["not_scored"][0]["reason"]
    assert "rerun the same command" not in res.stdout
    assert _cached(project) == (N_DOCS - 2) * 4
