"""Generative, rolling, chat and external tasks through a real pytest run, with the dummy model
whose answers are known (models/dummy.py): exact scores per filter in the terminal table,
results.json, samples and JUnit; --gen-kwargs, repeats and seeds; rolling perplexities;
--apply-chat-template with --system-instruction; --include-path and lm-eval's catalogue
(collected from their YAML files); and the errors for what is not supported.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from benchmark_source import benchmark_source  # noqa: E402
from mirror import ROOT, merged_mirror, shared_mirror  # noqa: E402

# Imported once here: pytester's in-process runs drop modules first imported inside them, and
# datasets (pyarrow extension types) cannot be imported twice in one process.
pytest.importorskip("datasets")

GEN_TASK = """\
task: arith
dataset_path: local/arith
output_type: generate_until
test_split: test
doc_to_text: "Q: {{question}}\\n{{reply}}"
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["\\n\\n", "STOP"]
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    regexes_to_ignore: [",", "\\\\.$"]
filter_list:
  - name: strict-match
    filter:
      - function: regex
        regex_pattern: "#### (\\\\-?[0-9\\\\.\\\\,]+)"
      - function: take_first
  - name: flexible-extract
    filter:
      - function: regex
        group_select: -1
        regex_pattern: "(-?[$0-9.,]{2,})|(-?[0-9]+)"
      - function: take_first
"""
# The dummy repeats the prompt's last line (`reply`), cut at the stop sequences.
ROWS = [
    {"question": "2+2", "reply": "#### 4", "answer": "4"},  # strict 1, flexible 1 ("4" is one digit: group 2)
    {"question": "10*10", "reply": "It is 100.STOP ignored", "answer": "100"},  # strict 0, flexible 1
    {"question": "1000+234", "reply": "#### 1,234", "answer": "1234"},  # strict 1, flexible 1
    {"question": "7-8", "reply": "no idea", "answer": "-1"},  # both 0
]


def _project(root: Path, tasks: dict[str, str], rows: dict[str, list[dict]]) -> Path:
    for name, text in tasks.items():
        folder = root / "evals" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.yaml").write_text(text)
        (folder / f"test_{name}.py").write_text(benchmark_source(name, name))
    for dataset, split_rows in rows.items():
        data = root / "data" / dataset / "default"
        data.mkdir(parents=True, exist_ok=True)
        (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split_rows))
    (root / "pytest.ini").write_text("[pytest]\nlmeval_evals_dir = evals\n")
    return root


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "--model", "dummy:d", "--no-cache", *args)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _samples(path: Path) -> list[dict]:
    """The sample lines without their timing measurements (which differ run to run)."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "efficiency"} for line in lines]


def test_generation_scored_per_filter(pytester: pytest.Pytester) -> None:
    _project(pytester.path, {"arith": GEN_TASK}, {"local/arith": ROWS})
    result = _run(
        pytester, "evals", "--data-dir", "data", "--output-path", "out", "--log-samples", "--junitxml", "junit.xml"
    )
    assert result.ret == 0
    result.assert_outcomes(passed=4)
    table = [line.replace(" ", "") for line in result.outlines if line.startswith("|")]
    assert "|arith|0|strict-match|0|exact_match|↑|0.5000|±|0.2887|" in table
    assert "|||flexible-extract||exact_match|↑|0.7500|±|0.2500|" in table
    res = _json(pytester.path / "out" / "results.json")["results"]["arith"]
    assert res["exact_match,strict-match"] == 0.5
    assert res["exact_match,flexible-extract"] == 0.75
    assert res["exact_match_stderr,strict-match"] == pytest.approx(math.sqrt(1 / 3) / 2)
    samples = _samples(pytester.path / "out" / "samples" / "arith.jsonl")
    assert [(s["filter"], s["doc_id"]) for s in samples] == [
        *[("strict-match", i) for i in range(4)],
        *[("flexible-extract", i) for i in range(4)],
    ]
    second = samples[1]
    assert second["resps"] == [["It is 100."]]
    assert second["filtered_resps"] == ["[invalid]"]
    assert second["exact_match"] == 0.0 and second["metrics"] == ["exact_match"]
    assert samples[5]["filtered_resps"] == ["100."] and samples[5]["exact_match"] == 1.0
    assert second["arguments"] == {
        "gen_args_0": {
            "arg_0": "Q: 10*10\nIt is 100.STOP ignored",
            "arg_1": {"do_sample": False, "until": ["\n\n", "STOP"]},
        }
    }
    assert second["prompt_hash"] == hashlib.sha256(b"Q: 10*10\nIt is 100.STOP ignored").hexdigest()
    assert second["target"] == "100"
    junit = (pytester.path / "junit.xml").read_text()
    assert 'name="exact_match,strict-match" value="0.0"' in junit


def test_gen_kwargs_merge_into_generation_kwargs(pytester: pytest.Pytester) -> None:
    _project(pytester.path, {"arith": GEN_TASK}, {"local/arith": ROWS})
    result = _run(
        pytester,
        "evals", "--data-dir", "data", "--output-path", "out", "--log-samples",
        "--gen-kwargs", 'max_gen_toks=3,until=["\\n\\n","Q:"],top_p=0.9',
    )  # fmt: skip
    assert result.ret == 0
    doc = _json(pytester.path / "out" / "results.json")
    assert doc["config"]["gen_kwargs"] == {"max_gen_toks": 3, "until": ["\n\n", "Q:"], "top_p": 0.9}
    assert doc["configs"]["arith"]["generation_kwargs"] == {  # the task's, updated as lm-eval updates them
        "until": ["\n\n", "Q:"],
        "do_sample": False,
        "max_gen_toks": 3,
        "top_p": 0.9,
    }
    sample = _samples(pytester.path / "out" / "samples" / "arith.jsonl")[1]
    assert sample["arguments"]["gen_args_0"]["arg_1"] == {
        "do_sample": False,
        "max_gen_toks": 3,
        "top_p": 0.9,
        "until": ["\n\n", "Q:"],
    }
    assert sample["resps"] == [["It "]]  # 3 characters: the dummy's tokens; "STOP" no longer stops


REPEAT_TASK = """\
task: vote
dataset_path: local/vote
output_type: generate_until
test_split: test
doc_to_text: "{{reply}}"
doc_to_target: "{{answer}}"
repeats: 3
generation_kwargs:
  until: ["\\n"]
filter_list:
  - name: maj@3
    filter:
      - function: majority_vote
      - function: take_first
  - name: first
    filter:
      - function: take_first
"""


def test_repeats_sample_with_seeds_and_vote(pytester: pytest.Pytester) -> None:
    """With sampling the dummy picks part seed % 3 of "a|b|c"; the three repeats carry seeds
    s, s+1, s+2, so each part comes once; a vote needs two equal parts."""
    rows = [{"reply": "7|7|8", "answer": "7"}, {"reply": "1|2|2", "answer": "2"}, {"reply": "x|y|z", "answer": "z"}]
    _project(pytester.path, {"vote": REPEAT_TASK}, {"local/vote": rows})
    args = ("evals", "--data-dir", "data", "--log-samples", "--gen-kwargs", "do_sample=true,temperature=0.7")
    result = _run(pytester, *args, "--output-path", "out", "--seed", "3")
    assert result.ret == 0
    samples = _samples(pytester.path / "out" / "samples" / "vote.jsonl")
    # seeds 3, 4, 5 -> parts 0, 1, 2
    assert [s["resps"] for s in samples[:3]] == [[["7", "7", "8"]], [["1", "2", "2"]], [["x", "y", "z"]]]
    assert [s["filtered_resps"] for s in samples[:3]] == [["7"], ["2"], ["x"]]
    assert [s["arguments"]["gen_args_0"]["arg_1"]["seed"] for s in samples[:3]] == [3, 3, 3]
    res = _json(pytester.path / "out" / "results.json")["results"]["vote"]
    assert res["exact_match,maj@3"] == pytest.approx(2 / 3)
    assert res["exact_match,first"] == pytest.approx(1 / 3)
    engine = _json(pytester.path / "out" / "results.json")["engine"]
    assert engine["requests"] == 9 and engine["unique_requests"] == 9
    again = _run(pytester, *args, "--output-path", "again", "--seed", "3")
    assert again.ret == 0
    assert _samples(pytester.path / "again" / "samples" / "vote.jsonl") == samples  # same seeds, same text


def test_greedy_repeats_compute_once(pytester: pytest.Pytester) -> None:
    rows = [{"reply": "7|7|8", "answer": "7|7|8"}]
    _project(pytester.path, {"vote": REPEAT_TASK}, {"local/vote": rows})
    result = _run(pytester, "evals", "--data-dir", "data", "--output-path", "out", "--log-samples")
    assert result.ret == 0
    engine = _json(pytester.path / "out" / "results.json")["engine"]
    assert (engine["requests"], engine["unique_requests"]) == (3, 1)
    assert _samples(pytester.path / "out" / "samples" / "vote.jsonl")[0]["resps"] == [["7|7|8"] * 3]


ROLLING_TASK = """\
task: pages
dataset_path: local/pages
output_type: loglikelihood_rolling
test_split: test
doc_to_text: ""
doc_to_target: "{{text}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
"""


def test_rolling_perplexities_exact(pytester: pytest.Pytester) -> None:
    """The dummy scores a text at -1 per UTF-8 byte."""
    texts = ["one two three", "Café au lait", "x"]
    _project(pytester.path, {"pages": ROLLING_TASK}, {"local/pages": [{"text": t} for t in texts]})
    result = _run(pytester, "evals", "--data-dir", "data", "--output-path", "out")
    assert result.ret == 0
    res = _json(pytester.path / "out" / "results.json")["results"]["pages"]
    nbytes, words = 13 + 13 + 1, 3 + 3 + 1
    assert res["byte_perplexity,none"] == pytest.approx(math.e)
    assert res["bits_per_byte,none"] == pytest.approx(1 / math.log(2))
    assert res["word_perplexity,none"] == pytest.approx(math.exp(nbytes / words))
    assert res["word_perplexity_stderr,none"] == "N/A"
    table = [line.replace(" ", "") for line in result.outlines if line.startswith("|")]
    assert "|pages|0|none|0|word_perplexity|↓|47.3299||N/A|" in table


CUSTOM_TASK = """\
task: shout
dataset_path: local/shout
output_type: generate_until
test_split: test
process_docs: !function helpers.add_reply
doc_to_text: "{{word}}\\n{{reply}}"
doc_to_target: "{{word.lower()}}"
generation_kwargs:
  until: ["\\n"]
filter_list:
  - name: lower
    filter:
      - function: !function helpers.Strip
        chars: "!"
      - function: lowercase
      - function: take_first
"""
HELPERS = """\
from pytest_lmeval.scoring.filters import Filter


def add_reply(dataset):
    return dataset.map(lambda d: {"reply": d["word"].upper() + "!!"})


class Strip(Filter):
    def __init__(self, chars):
        self.chars = chars

    def apply(self, resps, docs):
        return [[r.strip(self.chars) for r in rs] for rs in resps]
"""


def test_include_path_task_without_test_file(pytester: pytest.Pytester) -> None:
    """A folder of task YAML with !function helpers and no test module: its items come from the
    YAML file itself (pytest_lmeval/task_items.py), and -k selects among them."""
    extra = pytester.path / "mytasks" / "shout"
    extra.mkdir(parents=True)
    (extra / "shout.yaml").write_text(CUSTOM_TASK)
    (extra / "helpers.py").write_text(HELPERS)
    _project(pytester.path, {}, {"local/shout": [{"word": "Hello"}, {"word": "World"}, {"word": "Bye"}]})
    (pytester.path / "evals").mkdir()
    args = ("--include-path", "mytasks", "--tasks", "shout", "--data-dir", "data")
    collected = _run(pytester, "evals", *args, "--collect-only", "-q")
    assert "mytasks/shout/shout.yaml::test_lmeval[shout-0]" in collected.outlines
    result = _run(pytester, "evals", *args, "--output-path", "out", "-k", "not shout-2")
    assert result.ret == 0
    result.assert_outcomes(passed=2, deselected=1)
    # "HELLO!!" (process_docs) -> "HELLO" (the helper filter) -> "hello" == the target
    assert _json(pytester.path / "out" / "results.json")["results"]["shout"]["exact_match,lower"] == 1.0
    assert "|shout|0|lower|0|exact_match|↑|1.0000|±|0.0000|" in [
        line.replace(" ", "") for line in result.outlines if line.startswith("|")
    ]


def test_lm_eval_catalogue_task_by_name(pytester: pytest.Pytester) -> None:
    pytest.importorskip("lm_eval")
    if shared_mirror() is None:
        pytest.skip("needs the shared benchmark mirror")
    (pytester.path / "evals").mkdir()
    (pytester.path / "pytest.ini").write_text("[pytest]\nlmeval_evals_dir = evals\n")
    args = ("evals", "--tasks", "mmlu_anatomy_continuation", "--limit", "2", "--data-dir", str(shared_mirror()))
    result = _run(pytester, *args, "--output-path", "out", "-v")
    assert result.ret == 0
    node = "lm_eval/tasks/mmlu/continuation/mmlu_anatomy.yaml::test_lmeval"
    result.stdout.fnmatch_lines([f"{node}?mmlu_anatomy_continuation-1? PASSED*"])
    assert "acc,none" in _json(pytester.path / "out" / "results.json")["results"]["mmlu_anatomy_continuation"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("doc_to_image: img\n", "image inputs (doc_to_image) are not supported by pytest-lmeval"),
        ("doc_to_audio: clip\n", "audio inputs (doc_to_audio) are not supported by pytest-lmeval"),
        ("unsafe_code: true\n", "executes model-written code (unsafe_code: true)"),
        ("metric_list:\n  - metric: bleu\n    aggregation: geometric\n", "aggregation 'geometric' is not supported"),
        (
            "filter_list:\n  - name: x\n    filter:\n      - function: decontaminate\n",
            "'decontaminate' is not supported",
        ),
    ],
)
def test_unsupported_yaml_feature_is_named(pytester: pytest.Pytester, extra: str, message: str) -> None:
    _project(pytester.path, {"arith": GEN_TASK.split("metric_list:")[0] + extra}, {"local/arith": ROWS})
    result = _run(pytester, "evals", "--data-dir", "data")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any("arith.yaml: task 'arith'" in line and message in line for line in result.errlines), result.errlines


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--fewshot-as-multiturn",), "--fewshot-as-multiturn needs --apply-chat-template"),
        (("--gen-kwargs", "temperature"), "--gen-kwargs: 'temperature' is not key=value"),
        (("--apply-chat-template",), "backend 'dummy' has no tokenizer to take a chat template from"),
    ],
)
def test_bad_prompt_options(pytester: pytest.Pytester, args: tuple[str, ...], message: str) -> None:
    _project(pytester.path, {"arith": GEN_TASK}, {"local/arith": ROWS})
    result = _run(pytester, "evals", "--data-dir", "data", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any(message in line for line in result.errlines), result.errlines


CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "{% if not loop.last or message['role'] != 'assistant' %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_chat_template_applied_and_recorded(pytester: pytest.Pytester) -> None:
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")))
    tok.chat_template = CHATML
    tok.save_pretrained(pytester.path / "tok")
    _project(pytester.path, {"arith": GEN_TASK}, {"local/arith": ROWS})
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--no-cache", "evals", "--data-dir", "data", "--output-path", "out", "--log-samples",
        "--model", "dummy:d", "--model-args", f"tokenizer={pytester.path / 'tok'}",
        "--apply-chat-template", "--system-instruction", "Be brief.",
    )  # fmt: skip
    assert result.ret == 0
    doc = _json(pytester.path / "out" / "results.json")
    assert doc["chat_template"] == CHATML
    assert doc["chat_template_sha"] == hashlib.sha256(CHATML.encode()).hexdigest()
    assert doc["system_instruction"] == "Be brief."
    assert doc["system_instruction_sha"] == hashlib.sha256(b"Be brief.").hexdigest()
    assert doc["fewshot_as_multiturn"] is True
    prompt = _samples(pytester.path / "out" / "samples" / "arith.jsonl")[0]["arguments"]["gen_args_0"]["arg_0"]
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ: 2+2\n#### 4<|im_end|>\n<|im_start|>assistant\n"
    )


def test_leaderboard_v1_each_task_with_its_n_shot_and_the_average(pytester: pytest.Pytester, tmp_path: Path) -> None:
    if shared_mirror() is None:
        pytest.skip("needs the shared benchmark mirror")
    mirror = merged_mirror(tmp_path / "mirror")
    result = pytester.runpytest(
        str(ROOT / "evals"), "-p", "no:cacheprovider", "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
        "--model", "dummy:d", "--no-cache", "--tasks", "leaderboard_v1", "--limit", "2",
        "--data-dir", str(mirror), "--output-path", str(pytester.path / "out"),
    )  # fmt: skip
    assert result.ret == 0
    rows = {
        cells[0].strip(" -"): cells
        for line in result.outlines
        if line.startswith("|") and (cells := [c.strip() for c in line.strip("|").split("|")])[0]
    }
    shots = {"arc_challenge": "25", "hellaswag": "10", "truthfulqa_mc2": "0", "winogrande": "5", "gsm8k": "5"}
    for task, n in shots.items():
        assert rows[task][3] == n, rows[task]
    assert rows["anatomy"][3] == "5"
    doc = _json(pytester.path / "out" / "results.json")
    res = doc["results"]
    parts = [
        res["arc_challenge"]["acc_norm,none"],
        res["hellaswag"]["acc_norm,none"],
        res["truthfulqa_mc2"]["acc,none"],
        res["mmlu"]["acc,none"],
        res["winogrande"]["acc,none"],
        res["gsm8k"]["exact_match,strict-match"],
    ]
    assert res["leaderboard_v1"]["average,none"] == pytest.approx(sum(parts) / 6)
    assert rows["leaderboard_v1"][4] == "average"
    assert doc["n-shot"]["mmlu_anatomy"] == 5 and doc["n-shot"]["hellaswag"] == 10
