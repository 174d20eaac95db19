"""Nothing recomputed, nothing lost: a run killed with SIGKILL mid-way resumes from the cache."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from benchmark_source import benchmark_source  # noqa: E402

N_DOCS = 400  # x 4 choices = 1600 requests: several cache chunks

TASK_YAML = """\
task: resume_task
dataset_path: local/resume
output_type: multiple_choice
test_split: test
doc_to_text: "Q: {{q}}\\nA:"
doc_to_choice: "{{choices}}"
doc_to_target: label
metric_list:
  - metric: acc
  - metric: acc_norm
"""


def _project(tmp: Path) -> Path:
    (tmp / "evals" / "resume").mkdir(parents=True)
    (tmp / "evals" / "resume" / "resume.yaml").write_text(TASK_YAML)
    (tmp / "evals" / "resume" / "test_resume.py").write_text(benchmark_source("resume", "resume_task"))
    (tmp / "pytest.ini").write_text("[pytest]\nlmeval_evals_dir = evals\n")
    data = tmp / "data" / "local" / "resume" / "default"
    data.mkdir(parents=True)
    rows = [
        {"q": f"question {i}", "choices": ["a" * (1 + (i + k) % 4) for k in range(4)], "label": i % 4}
        for i in range(N_DOCS)
    ]
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp


def _cmd(tmp: Path, out: str, delay: float) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "evals", "-q", "-p", "no:cacheprovider", "--model", "dummy:slow",
        "--model-args", f"delay={delay}", "--data-dir", "data", "--cache-dir", "cache", "--output-path", out,
    ]  # fmt: skip


def _cached(tmp: Path) -> int:
    db = tmp / "cache" / "responses.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _results(path: Path) -> dict:
    doc = json.loads(path.read_text())
    return {k: doc[k] for k in ("results", "n-samples", "configs")}


def test_killed_run_resumes_with_only_missing_requests(tmp_path: Path) -> None:
    project = _project(tmp_path)
    proc = subprocess.Popen(
        _cmd(project, "killed", 0.003), cwd=project, stdout=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 120
    while _cached(project) == 0 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = _cached(project)
    assert 0 < done_before < N_DOCS * 4, "the run should have been killed mid-way"

    resumed = subprocess.run(_cmd(project, "resumed", 0.0), cwd=project, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    engine = json.loads((project / "resumed" / "results.json").read_text())["engine"]
    assert engine["from_cache"] == done_before
    assert engine["computed"] == N_DOCS * 4 - done_before
    assert f"{done_before} from cache, {N_DOCS * 4 - done_before} computed" in resumed.stdout

    fresh = subprocess.run([*_cmd(project, "fresh", 0.0), "--no-cache"], cwd=project, capture_output=True, text=True)
    assert fresh.returncode == 0
    assert _results(project / "resumed" / "results.json") == _results(project / "fresh" / "results.json")


def _open_cache(folder: str) -> int:
    from pytest_lmeval.engine.cache import ResponseCache

    ResponseCache(Path(folder) / "responses.sqlite", "fp").close()
    return os.getpid()


def test_many_processes_open_a_new_cache_at_once(tmp_path: Path) -> None:
    """xdist workers start together: the first to switch a new file to WAL holds an exclusive
    lock, and SQLite answers the others "database is locked" without waiting. Every worker must
    open the cache all the same (this failed about one time in four before)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(6) as pool:
        for n in range(24):
            folder = tmp_path / str(n)
            pool.map(_open_cache, [str(folder)] * 12)
            mode = sqlite3.connect(folder / "responses.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
            assert mode == "wal"
