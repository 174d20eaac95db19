"""`pytest_lmeval.evaluate`: the command line's run from Python. The same numbers as the command
line on the same options (the dummy on the quiz project, SmolLM2 on arc_easy), twice in one
process; every option a keyword; bad input one error line; failed gates a result that did not
pass; a transformers model in memory scored and generated exactly as `hf:` loading the same
weights, cached under a hash of its weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from quiz_project import read_json, read_jsonl, run, write_quiz, write_rows

import pytest_lmeval as lm
from pytest_lmeval.run.python_api import command_line, option_flags

ROOT = Path(__file__).resolve().parents[1]

ECHO_YAML = """\
task: echo
dataset_path: local/echo
output_type: generate_until
test_split: test
doc_to_text: "Q: {{question}}\\nA:"
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 12
  do_sample: false
metric_list:
  - metric: exact_match
"""
ECHO_ROWS = [
    {"question": "What is the capital of France?", "answer": "Paris"},
    {"question": "The quick brown fox jumps over the lazy dog?", "answer": "yes"},
    {"question": "Science questions about plants, animals and water?", "answer": "the sun"},
]


def _project(root: Path) -> Path:
    """The quiz project (two multiple-choice tasks and their group) and a generation task."""
    write_quiz(root)
    (root / "evals" / "echo").mkdir(parents=True)
    (root / "evals" / "echo" / "echo.yaml").write_text(ECHO_YAML)
    write_rows(root / "data" / "local" / "echo" / "default" / "test.jsonl", ECHO_ROWS)
    return root


def _numbers(results: dict[str, Any], stderr: bool = True) -> dict[str, dict[str, Any]]:
    """results.json's "results": each metric (and its standard error) by lm-eval's key."""
    return {t: {k: v for k, v in r.items() if "," in k and (stderr or "_stderr," not in k)} for t, r in results.items()}


def _entries(result: lm.RunResult) -> dict[str, dict[str, Any]]:
    return {task: dict(entry.values) for task, entry in result.results.entries.items()}


def _answers(result: lm.RunResult) -> dict[tuple[str, int], Any]:
    """Every document's model answers (log-likelihoods, generated texts) and metrics."""
    return {(r["task"], r["doc_id"]): ([s["resps"] for s in r["samples"]], r["metrics"]) for r in result.records}


# -- the dummy against the command line --------------------------------------------------------
def test_dummy_equals_the_command_line_twice(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    cli = run(pytester, "--model=dummy:x", "--tasks=quiz", "--data-dir=data", "--limit=4", "--output-path=cli",
              "--log-samples", "--threshold=quiz_a:acc>=0.5")  # fmt: skip
    assert cli.ret == 0, cli.stdout.str()
    want = read_json(pytester.path / "cli" / "results.json")
    for n in (1, 2):
        result = lm.evaluate("dummy:x", ["quiz"], include_path="evals", data_dir="data", limit=4,
                             output_path=f"api{n}", log_samples=True, no_cache=True,
                             threshold=["quiz_a:acc>=0.5"])  # fmt: skip
        got = read_json(pytester.path / f"api{n}" / "results.json")
        assert _numbers(got["results"]) == _numbers(want["results"])
        assert got["gates"] == want["gates"] and result.passed
        assert _entries(result) == _numbers(want["results"], stderr=False)
        assert got["config"]["limit"] == 4 and got["config"]["log_samples"] is True
        for task in ("quiz_a", "quiz_b"):
            mine = read_jsonl(pytester.path / f"api{n}" / "samples" / f"{task}.jsonl")
            theirs = read_jsonl(pytester.path / "cli" / "samples" / f"{task}.jsonl")
            assert [(s["doc_id"], s["resps"]) for s in mine] == [(s["doc_id"], s["resps"]) for s in theirs]
        assert {p.name for p in result.output_files} >= {"results.json", "documents.jsonl"}


# -- options as keywords -----------------------------------------------------------------------
def test_every_command_line_option_is_a_keyword() -> None:
    flags = option_flags()
    for dest in ("model_args", "batch_size", "num_fewshot", "limit", "data_dir", "output_path", "gen_kwargs",
                 "threshold", "no_cache", "log_samples", "apply_chat_template", "fewshot_as_multiturn",
                 "task_args", "judge_model", "ignore_errors", "refresh_cache", "item_outcome", "perturb"):  # fmt: skip
        assert dest in flags, dest
    assert flags["chat_template"].dest == "apply_chat_template"  # each flag's own spelling too
    args = command_line(
        ["arc_easy", "mmlu"],
        {
            "limit": 0.5,
            "gen_kwargs": {"temperature": 0.0, "until": ["\n\n"]},
            "model_args": {"dtype": "float32", "prefix_reuse": False},
            "threshold": ["arc_easy:acc>=0.4", "mmlu:acc>=0.3"],
            "no_cache": True,
            "log_samples": False,
            "apply_chat_template": True,
            "fewshot_as_multiturn": False,
            "include_path": [Path("a"), Path("b")],
            "num_fewshot": None,
        },
    )
    assert args == [
        "--tasks=arc_easy,mmlu",
        "--limit=0.5",
        '--gen-kwargs={"temperature": 0.0, "until": ["\\n\\n"]}',
        "--model-args=dtype=float32,prefix_reuse=false",
        "--threshold=arc_easy:acc>=0.4",
        "--threshold=mmlu:acc>=0.3",
        "--no-cache",
        "--apply-chat-template",
        "--fewshot-as-multiturn=false",
        f"--include-path=a{os.pathsep}b",
    ]
    assert command_line(None, {"gen_kwargs": "temperature=0.8"}) == ["--gen-kwargs=temperature=0.8"]


def test_unknown_keyword_names_the_close_ones() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'num_fewshots'; did you mean: num_fewshot"):
        lm.evaluate("dummy:x", "quiz", num_fewshots=5)


def test_bad_input_raises_its_one_line_and_gates_return_the_result(tmp_path: Path, monkeypatch) -> None:
    root = _project(tmp_path)
    monkeypatch.chdir(root)
    with pytest.raises(lm.EvaluationError, match=r"^unknown task 'quizz' \(did you mean: quiz"):
        lm.evaluate("dummy:x", "quizz", include_path="evals", data_dir="data")
    with pytest.raises(lm.EvaluationError, match=r"--model 'nobackend:x': unknown backend"):
        lm.evaluate("nobackend:x", "quiz", include_path="evals", data_dir="data")
    result = lm.evaluate("dummy:x", "quiz_a,quiz_b", include_path="evals", data_dir="data", no_cache=True,
                         threshold="quiz_a:acc>=0.9", write_reports=False)  # fmt: skip
    assert not result.passed and [g.passed for g in result.gates] == [False]
    assert result.metric("quiz_a", "acc") == pytest.approx(0.6) and result.output_files == []
    assert not (root / "reports").exists()  # write_reports=False: written to a temporary folder, removed


# -- a model in memory -------------------------------------------------------------------------
def _load(folder: Path) -> tuple[Any, Any]:
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    return model, transformers.AutoTokenizer.from_pretrained(folder)


def test_in_memory_model_scores_and_generates_as_hf(tiny_model: Path, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("torch")
    from pytest_lmeval.models.hf.cpu_kernels import PackedLinear
    from pytest_lmeval.models.hf.in_memory import InMemoryBackend, state_digest
    from pytest_lmeval.models.spec import ModelSpec

    root = _project(tmp_path)
    monkeypatch.chdir(root)
    options = {"include_path": "evals", "data_dir": "data", "log_samples": True, "write_reports": False}
    from_disk = lm.evaluate(f"hf:{tiny_model}", ["quiz", "echo"], no_cache=True, **options)
    model, tok = _load(tiny_model)
    model.train()
    before = state_digest(model)
    for _ in range(2):
        in_memory = lm.evaluate(model, ["quiz", "echo"], tokenizer=tok, no_cache=True, **options)
        assert _answers(in_memory) == _answers(from_disk)  # log-likelihoods and texts, bit for bit
        assert _entries(in_memory) == _entries(from_disk)
    texts = [s["resps"][0][0] for r in in_memory.records if r["task"] == "echo" for s in r["samples"]]
    assert len(texts) == 3 and any(texts)
    assert in_memory.model == "hf:model (in memory)" and in_memory.model_info["loaded_from"] == "memory"
    # the caller's objects as they were: training mode, no pad token given, the same weights
    assert model.training and tok.pad_token_id is None and state_digest(model) == before
    with pytest.raises(lm.EvaluationError, match=r"model_args dtype: not for a model already in memory"):
        lm.evaluate(model, "quiz", tokenizer=tok, model_args={"dtype": "float16"}, **options)
    with pytest.raises(TypeError, match="needs its tokenizer="):
        lm.evaluate(model, "quiz", **options)
    backend = InMemoryBackend(model, tok, ModelSpec("hf", "x"), batch_size="auto")
    assert backend.model is model  # no copy: the same parameters, never packed for oneDNN
    assert not any(isinstance(m, PackedLinear) for m in model.modules())


def test_in_memory_answers_are_cached_under_the_weights_hash(tiny_model: Path, tmp_path: Path, monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    root = _project(tmp_path)
    monkeypatch.chdir(root)
    model, tok = _load(tiny_model)
    options = {"include_path": "evals", "data_dir": "data", "cache_dir": tmp_path / "cache", "write_reports": False}
    first = lm.evaluate(model, "quiz", tokenizer=tok, **options)
    again = lm.evaluate(model, "quiz", tokenizer=tok, **options)
    assert first.engine["computed"] == again.engine["from_cache"] == 21 and again.engine["computed"] == 0
    assert _entries(again) == _entries(first)
    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1.0  # new weights: a new key
    changed = lm.evaluate(model, "quiz", tokenizer=tok, **options)
    assert changed.engine["computed"] == 21
    fingerprints = [r.config["model_fingerprint"] for r in (first, again, changed)]
    assert fingerprints[0]["key"] == fingerprints[1]["key"] != fingerprints[2]["key"]
    assert fingerprints[0]["weights_sha256"] != fingerprints[2]["weights_sha256"]


# -- SmolLM2 against the command line ---------------------------------------------------------
LIMIT = 4


def test_smollm2_equals_the_command_line_twice(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("transformers")
    from real_model import GGUF, arc_data_dir, smollm2_dir

    from pytest_lmeval.models.hf import gguf_cache

    data, folder = arc_data_dir(), smollm2_dir()
    monkeypatch.chdir(tmp_path)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--no-cache", "--tasks=arc_easy",
           f"--limit={LIMIT}", f"--model=hf:{folder}", f"--model-args=gguf_file={GGUF},dtype=float32",
           f"--data-dir={data}", "--output-path=cli", "--log-samples"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    want = _numbers(read_json(tmp_path / "cli" / "results.json")["results"], stderr=False)
    lls = {s["doc_id"]: s["resps"] for s in read_jsonl(tmp_path / "cli" / "samples" / "arc_easy.jsonl")}
    options = {"limit": LIMIT, "data_dir": data, "no_cache": True, "log_samples": True, "write_reports": False}
    for _ in range(2):
        result = lm.evaluate(f"hf:{folder}", "arc_easy", model_args={"gguf_file": GGUF, "dtype": "float32"}, **options)
        assert _entries(result) == want
        assert {r["doc_id"]: r["samples"][0]["resps"] for r in result.records} == lls
    # the same weights in memory (the conversion the loads above made, as hf: reads it)
    where = gguf_cache.redirect(str(folder), str(folder), {"gguf_file": GGUF}, {"gguf_file": GGUF})
    assert where.converted
    model, tok = _load(Path(where.path))
    gguf_cache.after_load(model, tok, where)  # weights in memory of their own, as hf: has them
    result = lm.evaluate(model, "arc_easy", tokenizer=tok, **options)
    assert _entries(result) == want
    assert {r["doc_id"]: r["samples"][0]["resps"] for r in result.records} == lls
    json.dumps(result.config)  # the config record stays JSON
