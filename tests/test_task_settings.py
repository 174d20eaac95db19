"""Per-task settings in one run (--task-args, --run-file), as a user writes them: a run file of
three tasks at different n-shot, limits, few-shot seeds and filters gives the same numbers and
prompts as three separate runs; `</think>` filtering on generations that hold reasoning (the
dummy repeats the prompt's last line, models/dummy.py); results.json records each task's
settings; a group's subset_list; and the errors for malformed settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_lmeval.core.errors import LmevalError
from pytest_lmeval.run.task_settings import TaskSettings, parse_task_args
from pytest_lmeval.scoring.filters import RemoveUntilFilter

# The dummy answers with the prompt's last line: `reply`. Answers with reasoning are right only
# once everything up to the last </think> is dropped.
ROWS = [
    {"q": "2+2", "reply": "<think>two and two</think>4", "a": "4"},
    {"q": "3+3", "reply": "6", "a": "6"},  # no reasoning: kept whole, right either way
    {"q": "5+5", "reply": "<think>ten? </think>maybe<think>yes</think>10", "a": "10"},  # the last </think> counts
    {"q": "1+1", "reply": "<think>one and one</think>3", "a": "2"},  # wrong either way
    {"q": "4+4", "reply": "8</think>", "a": "8"},  # nothing after it: empty, wrong with the filter
    {"q": "9+0", "reply": "<think>nine</think>9", "a": "9"},
]
SHOTS = [{"q": f"{i}+0", "reply": str(i), "a": str(i)} for i in range(10)]

BENCH = f"""
import pytest_lmeval as lm

ROWS = {ROWS!r}
SHOTS = {SHOTS!r}


def task(name):
    return lm.generate(
        name,
        data=lm.rows(ROWS),
        fewshot=lm.fewshot(samples=SHOTS),
        prompt="Q: {{q}}\\n{{reply}}",
        target=lambda doc: doc["a"],
    )


alpha, beta, gamma = task("alpha"), task("beta"), task("gamma")
trio = lm.group("trio", [alpha, beta, gamma], metrics=["exact_match"])


@lm.benchmark(trio)
def test_trio(doc):
    doc.score()
"""

RUN_FILE = """\
model: dummy:d
tasks:
  - task: alpha
    num_fewshot: 2
    limit: 3
  - task: beta
    few_shot_num: 1        # EvalScope's name
    limit: 5
    fewshot_seed: 7
  - task: gamma
    num_fewshot: 1
    limit: 6
    filters: {remove_until: "</think>"}
"""


def _run(pytester: pytest.Pytester, out: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "-p", "no:cacheprovider", "--no-cache", "--log-samples", "--output-path", out, "test_trio.py", *args
    )  # fmt: skip


def _results(pytester: pytest.Pytester, out: str) -> dict:
    return json.loads((pytester.path / out / "results.json").read_text())


def _samples(pytester: pytest.Pytester, out: str, task: str) -> list[dict]:
    lines = (pytester.path / out / "samples" / f"{task}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _shown(doc: dict, task: str) -> tuple:
    """What a task's numbers and prompts are, for comparing runs."""
    return doc["results"][task], doc["n-shot"][task], doc["n-samples"][task]["effective"]


def test_run_file_equals_three_separate_runs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_trio=BENCH)
    pytester.path.joinpath("run.yaml").write_text(RUN_FILE)
    together = _run(pytester, "together", "--run-file", "run.yaml")
    assert together.ret == 0, together.stdout.str()
    together.assert_outcomes(passed=3 + 5 + 6)
    doc = _results(pytester, "together")

    separate = {
        "alpha": ["--num-fewshot", "2", "--limit", "3"],
        "beta": ["--num-fewshot", "1", "--limit", "5", "--seed", "7"],
        "gamma": ["--num-fewshot", "1", "--limit", "6", "--task-args", "gamma:filters={'remove_until': '</think>'}"],
    }
    for task, args in separate.items():
        alone = _run(pytester, task, "--model", "dummy:d", "--tasks", task, *args)
        assert alone.ret == 0, alone.stdout.str()
        one = _results(pytester, task)
        assert _shown(doc, task) == _shown(one, task)
        prompts = [s["arguments"] for s in _samples(pytester, "together", task)]
        assert prompts == [s["arguments"] for s in _samples(pytester, task, task)]

    assert doc["n-shot"] == {"alpha": 2, "beta": 1, "gamma": 1}
    assert {t: doc["n-samples"][t]["effective"] for t in ("alpha", "beta", "gamma")} == {
        "alpha": 3,
        "beta": 5,
        "gamma": 6,
    }
    # the prompts hold the asked-for number of examples (each a "Q: ..." line)
    alpha = _samples(pytester, "together", "alpha")
    assert [s["arguments"]["gen_args_0"]["arg_0"].count("Q: ") for s in alpha] == [3] * 3
    # without the filter, only "6" (no reasoning) is right among alpha's 3 and beta's 5
    assert doc["results"]["alpha"]["exact_match,none"] == pytest.approx(1 / 3)
    assert doc["results"]["beta"]["exact_match,none"] == pytest.approx(1 / 5)
    # with it: 4, 6, 10 and 9 are right; 3 (wrong) and "" (nothing after </think>) are not
    assert doc["results"]["gamma"]["exact_match,none"] == pytest.approx(4 / 6)
    settings = {t: doc["configs"][t].get("task_settings") for t in ("alpha", "beta", "gamma")}
    assert settings == {
        "alpha": {"num_fewshot": 2, "limit": 3},
        "beta": {"num_fewshot": 1, "limit": 5, "fewshot_seed": 7},
        "gamma": {"num_fewshot": 1, "limit": 6, "filters": [{"remove_until": "</think>"}]},
    }
    gamma = _samples(pytester, "together", "gamma")
    assert gamma[2]["resps"] == [["<think>ten? </think>maybe<think>yes</think>10"]]
    assert gamma[2]["filtered_resps"] == ["10"]


def test_think_filter_on_reasoning_generations() -> None:
    cut = RemoveUntilFilter("</think>").apply([[r["reply"]] for r in ROWS], ROWS)
    assert cut == [["4"], ["6"], ["10"], ["3"], [""], ["9"]]
    assert RemoveUntilFilter("</think>").apply([[(-1.0, True)]], [{}]) == [[(-1.0, True)]]  # not text: untouched


def test_task_args_json_group_settings_and_subsets(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_trio=BENCH)
    args = {
        "trio": {"limit": 2, "num_fewshot": 1, "subset_list": ["alpha", "gamma"], "system_prompt": "Be brief."},
        "gamma": {"limit": 4, "gen_kwargs": {"max_gen_toks": 1}},
    }
    result = _run(pytester, "out", "--model", "dummy:d", "--tasks", "trio", "--task-args", json.dumps(args))
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=2 + 4)  # beta is not among the group's subsets
    doc = _results(pytester, "out")
    assert set(doc["n-shot"]) == {"alpha", "gamma"}
    assert doc["configs"]["gamma"]["generation_kwargs"]["max_gen_toks"] == 1
    assert doc["configs"]["gamma"]["task_settings"]["limit"] == 4  # the task's own beats its group's
    prompt = _samples(pytester, "out", "alpha")[0]["arguments"]["gen_args_0"]["arg_0"]
    assert prompt.startswith("Be brief.Q: ")  # lm-eval joins a system instruction to what follows as is
    # max_gen_toks=1: "<think>..." is cut to "<", "6" stays right
    assert doc["results"]["gamma"]["exact_match,none"] == pytest.approx(1 / 4)


def test_task_args_key_value_form() -> None:
    run = parse_task_args(['gsm8k:num_fewshot=5;limit=0.5;subset_list=[a, b];gen_kwargs={"temperature": 0}'])
    assert run.by_name["gsm8k"] == TaskSettings(
        num_fewshot=5, limit=0.5, subset_list=("a", "b"), gen_kwargs={"temperature": 0.0}
    )
    run = parse_task_args(["gsm8k:limit=3", "gsm8k:chat_template=false", '{"mmlu": {"seed": 3}}'])
    assert run.by_name["gsm8k"] == TaskSettings(limit=3, chat_template=False)
    assert run.by_name["mmlu"].fewshot_seed == 3


@pytest.mark.parametrize(
    "text,message",
    [
        ("gsm8k:shots=5", "unknown setting 'shots'"),
        ("gsm8k", "expected TASK:key=value"),
        ("gsm8k:limit=-1", "limit -1: must be positive"),
        ("gsm8k:num_fewshot=two", "num_fewshot must be a whole number"),
        ('gsm8k:filters={"cut": "x"}', "unknown filter 'cut'"),
        ('{"gsm8k": 5}', "settings must be a mapping"),
        ("{not json", "not valid JSON"),
    ],
)
def test_malformed_task_args(text: str, message: str) -> None:
    with pytest.raises(LmevalError, match=message):
        parse_task_args([text])


def test_bad_run_file_and_unknown_task_are_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_trio=BENCH)
    Path(pytester.path / "run.yaml").write_text("tasks:\n  - task: alpha\n    limit: [\n")
    result = _run(pytester, "out", "--run-file", "run.yaml")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--run-file *run.yaml: not valid YAML at line *"])
    Path(pytester.path / "run.yaml").write_text("model: dummy:d\nshots: 3\ntasks: [alpha]\n")
    result = _run(pytester, "out", "--run-file", "run.yaml")
    result.stderr.fnmatch_lines(["*unknown keys [[]'shots'[]]*"])
    result = _run(pytester, "out", "--model", "dummy:d", "--tasks", "alpha", "--task-args", "nosuch:limit=1")
    assert result.ret != 0
    assert "nosuch" in result.stderr.str()
    result = _run(pytester, "out", "--model", "dummy:d", "--tasks", "trio", "--task-args", "trio:subset_list=[alfa]")
    result.stderr.fnmatch_lines(["*subset_list for 'trio': 'alfa' is none of its tasks (alpha, beta, gamma)*"])
    result = _run(pytester, "out", "--model", "dummy:d", "--tasks", "alpha", "--task-args", "alpha:subset_list=[x]")
    result.stderr.fnmatch_lines(["*subset_list for 'alpha': it is a task; subset_list picks a group's tasks*"])


@pytest.fixture(scope="module")
def chat_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tokenizer folder with a chat template (built before pytester's test starts: what it
    imports must outlive the test, see conftest.py)."""
    from tiny_model import build_tiny_model
    from transformers import AutoTokenizer

    folder = build_tiny_model(tmp_path_factory.mktemp("tok"))
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    tok.save_pretrained(folder)
    return folder


def test_chat_template_on_and_off_per_task(pytester: pytest.Pytester, chat_tokenizer: Path) -> None:
    folder = chat_tokenizer
    pytester.makepyfile(test_trio=BENCH)
    model = ["--model", "dummy:d", "--model-args", f"tokenizer={folder}", "--tasks", "alpha,beta", "--limit", "1"]
    on = _run(pytester, "on", *model, "--task-args", "beta:chat_template=true;num_fewshot=0")
    assert on.ret == 0, on.stdout.str()
    assert (
        _samples(pytester, "on", "alpha")[0]["arguments"]["gen_args_0"]["arg_0"]
        == "Q: 2+2\n<think>two and two</think>4"
    )
    assert (
        _samples(pytester, "on", "beta")[0]["arguments"]["gen_args_0"]["arg_0"]
        == "<user>Q: 2+2\n<think>two and two</think>4<assistant>"
    )
    off = _run(pytester, "off", *model, "--apply-chat-template", "--task-args", "alpha:chat_template=false")
    assert off.ret == 0, off.stdout.str()
    assert (
        _samples(pytester, "off", "alpha")[0]["arguments"]["gen_args_0"]["arg_0"]
        == "Q: 2+2\n<think>two and two</think>4"
    )
    assert _samples(pytester, "off", "beta")[0]["arguments"]["gen_args_0"]["arg_0"].startswith("<user>")


def test_run_file_gates(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_trio=BENCH)
    gated = RUN_FILE.replace("    fewshot_seed: 7\n", "    fewshot_seed: 7\n    threshold: exact_match>=0.5\n")
    gated = gated.replace('    filters: {remove_until: "</think>"}\n', '    filters: {remove_until: "</think>"}\n'
                          "    threshold: [exact_match>=0.6]\n")  # fmt: skip
    pytester.path.joinpath("run.yaml").write_text(gated + "threshold: ['alpha:exact_match<=0.5']\n")
    result = _run(pytester, "out", "--run-file", "run.yaml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # beta's gate: 1/5 < 0.5
    gates = {g["name"]: g["passed"] for g in _results(pytester, "out")["gates"]}
    assert gates == {
        "gate[alpha:exact_match<=0.5]": True,
        "gate[beta:exact_match>=0.5]": False,
        "gate[gamma:exact_match>=0.6]": True,  # 4/6 with the </think> filter; 1/6 without
    }
    ran_with = {g["name"]: g["ran_with"] for g in _results(pytester, "out")["gates"]}
    assert ran_with["gate[gamma:exact_match>=0.6]"]["documents"] == 6
    assert ran_with["gate[gamma:exact_match>=0.6]"]["filters"] == [{"remove_until": "</think>"}]
    assert ran_with["gate[beta:exact_match>=0.5]"]["fewshot_seed"] == 7
