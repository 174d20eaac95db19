"""Bad option values stop the run with one `ERROR:` line naming the option the user typed, pytest's
usage-error exit code and no traceback, before any model loads: an unknown hf model argument
(checked against what the backend and `from_pretrained` take, close matches suggested), a
device that is not present, generation arguments of the wrong type, an unknown judge backend,
`--tasks` naming nothing, a baseline without per-document results, and a judged task with no
judge model.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from quiz_project import error_lines, run, write_quiz

from pytest_lmeval.core.errors import LmevalError
from pytest_lmeval.models.hub import HF_OWN_ARGS, check_unknown_hf_args, gguf_architecture
from pytest_lmeval.run.option_values import parse_gen_kwargs
from pytest_lmeval.run.task_settings import parse_task_args

NO_MODEL = ("--model", "hf:/nonexistent/model-that-must-not-load")


def _one_error(result: pytest.RunResult, option: str) -> str:
    """The run's one ERROR line, which names `option`; no traceback, no model loaded."""
    shown = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, shown
    errors = error_lines(result)
    assert len(errors) == 1, result.errlines
    assert errors[0].startswith(f"ERROR: {option}") or f" {option}" in errors[0], errors[0]
    assert "Traceback" not in shown
    assert "loading" not in result.stdout.str()
    return errors[0]


def _quiz(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    write_quiz(pytester.path)
    return run(pytester, "evals", "--data-dir", "data", *args)


# -- hf model arguments ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            "nosuchkey=1",
            "ERROR: --model-args nosuchkey=1: unknown argument for hf "
            "(neither the backend's own, a from_pretrained keyword nor a LlamaConfig attribute)",
        ),
        ("dtyp=float32", "ERROR: --model-args dtyp='float32': unknown argument for hf (did you mean: dtype?)"),
        ("use_cach=false", "ERROR: --model-args use_cach=False: unknown argument for hf (did you mean: use_cache?)"),
        (
            "attn_implementaton=eager",
            "ERROR: --model-args attn_implementaton='eager': unknown argument for hf (did you mean: attn_implementati",
        ),
    ],
)
def test_unknown_hf_model_argument(pytester: pytest.Pytester, tiny_model: Path, args: str, message: str) -> None:
    error = _one_error(
        _quiz(pytester, "--model", f"hf:{tiny_model}", "--model-args", args, "--limit", "1"), "--model-args"
    )
    assert error.startswith(message), error


def test_an_unknown_secret_argument_is_not_shown(pytester: pytest.Pytester, tiny_model: Path) -> None:
    result = _quiz(pytester, "--model", f"hf:{tiny_model}", "--model-args", "tokn=hf_abcdefghijklmnop", "--limit", "1")
    error = _one_error(result, "--model-args")
    assert error.startswith("ERROR: --model-args tokn='<redacted>': unknown argument for hf (did you mean: token")
    assert "hf_abcdef" not in result.stdout.str() + result.stderr.str()


def test_the_arguments_users_pass_today_are_accepted(tiny_model: Path) -> None:
    args = {
        # the backend's own, and those it hands on
        **dict.fromkeys(HF_OWN_ARGS, 1),
        "trust_remote_code": False, "device_map": "auto", "revision": "main", "subfolder": "", "cache_dir": "c",
        "token": "x", "local_files_only": True,
        # from_pretrained's keywords, named or popped from **kwargs
        "torch_dtype": "float32", "attn_implementation": "eager", "low_cpu_mem_usage": True, "variant": "fp16",
        "use_safetensors": True, "max_memory": "{}", "offload_folder": "o", "quantization_config": "{}",
        # the model config's attributes, which from_pretrained sets from what is left
        "use_cache": False, "num_hidden_layers": 1, "rms_norm_eps": 1e-5, "output_hidden_states": False,
    }  # fmt: skip
    check_unknown_hf_args(args, tiny_model)


def test_the_backend_own_arguments_are_the_checks(tiny_model: Path) -> None:
    from pytest_lmeval.models.hf import backend

    assert set(HF_OWN_ARGS) == set(backend._OWN_ARGS)


def test_a_config_that_cannot_be_read_refuses_nothing(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")  # no model_type: transformers cannot tell its attributes
    check_unknown_hf_args({"anything_at_all": 1}, tmp_path)
    check_unknown_hf_args({"nosuchkey": 1, "trust_remote_code": True}, tmp_path)  # remote code: its own config


def _gguf(path: Path, architecture: str) -> Path:
    """A GGUF header (version 3, no tensors): a string array first, then the architecture."""

    def text(s: str) -> bytes:
        return struct.pack("<Q", len(s.encode())) + s.encode()

    tokens = b"".join(text(t) for t in ("<s>", "a", "bb"))
    kv = text("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + tokens
    kv += text("general.block_count") + struct.pack("<II", 4, 2)
    kv += text("general.architecture") + struct.pack("<I", 8) + text(architecture)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 3) + kv)
    return path


def test_gguf_arguments_are_checked_against_its_architecture(tmp_path: Path) -> None:
    _gguf(tmp_path / "m.gguf", "llama")
    assert gguf_architecture(tmp_path / "m.gguf") == "llama"
    assert gguf_architecture(_gguf(tmp_path / "q.gguf", "qwen2moe")) == "qwen2moe"
    mistral = {"sliding_window": 4096}  # a llama GGUF file may load as mistral
    check_unknown_hf_args({"gguf_file": "m.gguf", "use_cache": False, **mistral}, tmp_path)
    typo = r"^--model-args vocab_sze=1: unknown argument for hf \(did you mean: vocab_size"
    with pytest.raises(LmevalError, match=typo):
        check_unknown_hf_args({"gguf_file": "m.gguf", "vocab_sze": 1}, tmp_path)
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf file")
    assert gguf_architecture(tmp_path / "bad.gguf") is None
    check_unknown_hf_args({"gguf_file": "bad.gguf", "vocab_sze": 1}, tmp_path)  # unknown architecture: no check


# -- the device ----------------------------------------------------------------------------------
def test_unknown_device(pytester: pytest.Pytester) -> None:
    error = _one_error(_quiz(pytester, *NO_MODEL, "--device", "gpu"), "--device")
    assert error == "ERROR: --device 'gpu': unknown device (did you mean: xpu, cpu?); use cpu, cuda, cuda:N or mps"


def test_a_cuda_device_that_is_not_present(pytester: pytest.Pytester) -> None:
    error = _one_error(_quiz(pytester, *NO_MODEL, "--device", "cuda:99"), "--device")
    assert error.startswith("ERROR: --device 'cuda:99': "), error
    assert "use --device cpu" in error or "this process sees" in error


def test_cuda_without_cuda(pytester: pytest.Pytester) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    error = _one_error(_quiz(pytester, *NO_MODEL, "--device", "cuda"), "--device")
    assert error.startswith("ERROR: --device 'cuda': ") and error.endswith("; use --device cpu"), error


def test_mps_where_there_is_none(pytester: pytest.Pytester) -> None:
    import torch

    if torch.backends.mps.is_available():
        pytest.skip("MPS is present here")
    error = _one_error(_quiz(pytester, *NO_MODEL, "--device", "mps"), "--device")
    assert error == "ERROR: --device 'mps': Apple's MPS backend is not available here; use --device cpu"


# -- generation arguments ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_gen_toks=abc", "ERROR: --gen-kwargs max_gen_toks='abc': expected a positive whole number"),
        ("max_new_tokens=0", "ERROR: --gen-kwargs max_new_tokens=0: expected a positive whole number"),
        ("temperature=hot", "ERROR: --gen-kwargs temperature='hot': expected a number, 0 or more"),
        ("top_p=1.5", "ERROR: --gen-kwargs top_p=1.5: expected a number above 0, at most 1"),
        ("top_k=2.5", "ERROR: --gen-kwargs top_k=2.5: expected a whole number"),
        ("do_sample=maybe", "ERROR: --gen-kwargs do_sample='maybe': expected true or false"),
        ("until=5", "ERROR: --gen-kwargs until=5: expected a string or a list of strings"),
        ('{"max_gen_toks": [1]}', "ERROR: --gen-kwargs max_gen_toks=[1]: expected a positive whole number"),
    ],
)
def test_bad_generation_arguments(pytester: pytest.Pytester, text: str, message: str) -> None:
    assert _one_error(_quiz(pytester, "--model", "dummy:d", "--gen-kwargs", text), "--gen-kwargs") == message


def test_bad_generation_arguments_of_a_task(pytester: pytest.Pytester) -> None:
    result = _quiz(pytester, "--model", "dummy:d", "--task-args", 'quiz_a:gen_kwargs={"max_gen_toks": "x"}')
    assert _one_error(result, "--task-args") == (
        "ERROR: --task-args: 'quiz_a': gen_kwargs max_gen_toks='x': expected a positive whole number"
    )
    with pytest.raises(LmevalError, match=r"^--task-args: 'q': gen_kwargs temperature='warm': expected a number"):
        parse_task_args(['{"q": {"gen_kwargs": "temperature=warm"}}'])


def test_good_generation_arguments_keep_their_values() -> None:
    got = parse_gen_kwargs('temperature=0,top_p=0.95,top_k=40,do_sample=true,max_gen_toks=64,until=["\\n\\n","Q:"]')
    assert got == {
        "temperature": 0.0, "top_p": 0.95, "top_k": 40, "do_sample": True, "max_gen_toks": 64, "until": ["\n\n", "Q:"],
    }  # fmt: skip
    assert isinstance(got["temperature"], float)
    assert parse_gen_kwargs('{"until": "\\n", "max_new_tokens": 8, "repetition_penalty": "x"}') == {
        "until": "\n", "max_new_tokens": 8, "repetition_penalty": "x",  # a key not known passes as given
    }  # fmt: skip
    assert parse_task_args(['q:gen_kwargs={"temperature": 0}']).by_name["q"].gen_kwargs == {"temperature": 0.0}


# -- the judge model, --tasks, --baseline ----------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nosuch:x", "ERROR: --judge-model 'nosuch:x': unknown backend 'nosuch' (backends: hf, vllm, "),
        ("dumy:x", "ERROR: --judge-model 'dumy:x': unknown backend 'dumy' (did you mean: dummy?) (backends: "),
        ("judge", "ERROR: --judge-model 'judge': expected BACKEND:NAME, e.g. hf:EleutherAI/pythia-160m (backends: "),
    ],
)
def test_unknown_judge_backend_names_the_judge_option(pytester: pytest.Pytester, value: str, message: str) -> None:
    error = _one_error(_quiz(pytester, "--model", "dummy:d", "--judge-model", value), "--judge-model")
    assert error.startswith(message), error


def test_malformed_judge_model_args_name_the_judge_option(pytester: pytest.Pytester) -> None:
    result = _quiz(pytester, "--model", "dummy:d", "--judge-model", "dummy:j", "--judge-model-args", "base_url")
    assert _one_error(result, "--judge-model-args") == (
        "ERROR: --judge-model-args: 'base_url' is not key=value (expected e.g. dtype=float32,revision=main)"
    )


@pytest.mark.parametrize("value", ["", ",", " , "])
def test_tasks_naming_no_task(pytester: pytest.Pytester, value: str) -> None:
    error = _one_error(_quiz(pytester, "--model", "dummy:d", "--tasks", value), "--tasks")
    assert error == f"ERROR: --tasks {value!r}: names no task (--tasks list shows them)"


def test_baseline_without_per_document_results(pytester: pytest.Pytester) -> None:
    old = pytester.path / "old"
    old.mkdir()
    (old / "results.json").write_text(json.dumps({"results": {"quiz_a": {"acc,none": 0.5}}}))
    message = (
        "that run wrote no per-document file (documents.jsonl, or samples/*.jsonl with --log-samples), and a paired "
        "comparison needs one: run the baseline again, or pass a run that did"
    )
    for given in ("old", "old/results.json"):
        result = _quiz(pytester, "--model", "dummy:d", "--baseline", given, "--max-drop", "1")
        assert _one_error(result, "--baseline") == f"ERROR: --baseline {given!r}: {message}"
        assert not (pytester.path / "reports").exists()  # stopped before the run


JUDGED = """
import pytest_lmeval as lm

ROWS = [{"question": "Capital of Italy?", "answer": "Rome", "reply": "Rome"},
        {"question": "2+2?", "answer": "4", "reply": "five"}]

NAME = lm.generate("NAME", data=lm.rows(ROWS), prompt="{question}\\n{reply}", target="answer",
                   metrics=[lm.judge("METRIC", strategy="STRATEGY")])


@lm.benchmark(NAME)
def test_NAME(doc):
    doc.score()
"""


def _bench(name: str, metric: str, strategy: str) -> str:
    return JUDGED.replace("NAME", name).replace("METRIC", metric).replace("STRATEGY", strategy)


def _judged(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_qa=_bench("qa", "verdict", "llm"),
        test_recall=_bench("recall", "verdict_or_rule", "llm_recall"),
        test_ruled=_bench("ruled", "by_rule", "rule"),
    )


def _judged_run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "--no-cache", "--model", "dummy:d", *args)


def test_judged_task_without_a_judge_model(pytester: pytest.Pytester) -> None:
    _judged(pytester)
    error = _one_error(_judged_run(pytester, "test_qa.py"), "--judge-model")
    assert error == (
        "ERROR: task 'qa': metric 'verdict' is scored by a judge model: pass --judge-model BACKEND:NAME "
        "(or --judge-strategy rule to score by the metric's rule alone)"
    )
    error = _one_error(_judged_run(pytester, "test_qa.py", "test_recall.py", "test_ruled.py"), "--judge-model")
    assert error.startswith("ERROR: tasks 'qa', 'recall': metrics 'verdict', 'verdict_or_rule' are scored by a judge")
    # the run's strategy over each metric's: rule needs no judge, llm makes a rule metric ask one
    assert _judged_run(pytester, "test_qa.py", "test_recall.py", "--judge-strategy", "rule").ret == 0
    error = _one_error(_judged_run(pytester, "test_ruled.py", "--judge-strategy", "llm"), "--judge-model")
    assert error.startswith("ERROR: task 'ruled': metric 'by_rule' is scored by a judge model"), error


def test_judged_tasks_that_need_no_judge_run(pytester: pytest.Pytester) -> None:
    _judged(pytester)
    assert _judged_run(pytester, "test_ruled.py").ret == 0  # the metric's own strategy is the rule
    assert _judged_run(pytester, "test_qa.py", "test_ruled.py", "-k", "ruled").ret == 0  # the judged task deselected
    judged = _judged_run(pytester, "test_qa.py", "--judge-model", "dummy:judge")
    assert not error_lines(judged) and "lmeval judge:" in judged.stdout.str()
