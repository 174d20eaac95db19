"""End to end with the real SmolLM2-135M model on real data: our prompts, log-likelihoods and
metrics equal lm-evaluation-harness's, document by document.

The reference answers in tests/data/lmeval_reference.json were produced by lm-eval itself
(benchmarks/reference_fixture.py) on the same model file and data mirror.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mirror import LibraryTasks

from pytest_lmeval.models.hf.backend import HFBackend
from pytest_lmeval.models.spec import ModelSpec
from pytest_lmeval.scoring import metrics
from pytest_lmeval.tasks.task import Task

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = json.loads((Path(__file__).parent / "data" / "lmeval_reference.json").read_text())
LL_TOL = 1e-4


def _data_dir() -> Path:
    env = os.environ.get("LMEVAL_DATA_DIR")
    path = Path(env) if env else ROOT.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"the benchmark data mirror is not at {path} (set LMEVAL_DATA_DIR)")
    return path


@pytest.fixture(scope="module")
def smollm2() -> tuple[Path, str]:
    sys.path.insert(0, str(Path(__file__).parent))
    from real_model import GGUF, smollm2_dir

    return smollm2_dir(), GGUF


@pytest.fixture(scope="module")
def backend(smollm2) -> HFBackend:
    folder, gguf = smollm2
    return HFBackend(ModelSpec("hf", str(folder), {"gguf_file": gguf}), device="cpu", batch_size="auto")


@pytest.fixture(scope="module")
def registry() -> LibraryTasks:
    return LibraryTasks()


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=lambda c: f"{c['task']}-{c['num_fewshot']}shot")
def test_per_document_parity(case, backend, registry) -> None:
    task = Task(
        registry.tasks[case["task"]], data_dir=_data_dir(), num_fewshot=case["num_fewshot"], limit=case["limit"]
    )
    works = [task.build(i) for i in range(len(task.docs))]
    requests = [r for w in works for r in w.requests]
    answers = dict(zip(requests, backend.loglikelihood(requests, lambda n: None), strict=True))
    per_doc: dict[str, list[float]] = {}
    for work, ref in zip(works, case["samples"], strict=True):
        assert work.doc_id == ref["doc_id"]
        assert work.requests[0].args[0] == ref["context"], "prompt differs from lm-eval's"
        lls = [answers[r][0] for r in work.requests]
        assert lls == pytest.approx(ref["lls"], abs=LL_TOL)
        assert [answers[r][1] for r in work.requests] == ref["greedy"]
        scored = metrics.score_multiple_choice(lls, work.choices, work.target, task.config.metrics)
        for name, value in scored.items():
            per_doc.setdefault(name, []).append(value)
    for name, values in per_doc.items():
        assert round(metrics.mean(values), 4) == round(case["metrics"][f"{name},none"], 4)
        stderr = metrics.mean_stderr(values)
        assert stderr == pytest.approx(case["metrics"][f"{name}_stderr,none"], abs=1e-4)


def test_pytest_run_writes_lmeval_scores(smollm2, tmp_path) -> None:
    """The user's command: a real pytest run of evals/ gives lm-eval's numbers in results.json."""
    folder, gguf = smollm2
    case = next(c for c in REFERENCE["cases"] if c["task"] == "arc_easy")
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "pytest", str(ROOT / "evals"), "-p", "no:cacheprovider", "-q",
        "--tasks", "arc_easy", "--limit", str(case["limit"]), "--model", f"hf:{folder}",
        "--model-args", f"gguf_file={gguf}", "--data-dir", str(_data_dir()), "--output-path", str(out),
        "--cache-dir", str(tmp_path / "cache"), "--junitxml", str(tmp_path / "junit.xml"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{case['limit']} passed" in proc.stdout
    assert "|arc_easy|" in proc.stdout.replace(" ", "")
    results = json.loads((out / "results.json").read_text())["results"]["arc_easy"]
    for key in ("acc,none", "acc_norm,none"):
        assert round(results[key], 4) == round(case["metrics"][key], 4)
    junit = (tmp_path / "junit.xml").read_text()
    assert 'name="acc"' in junit and "arc_easy-0" in junit
