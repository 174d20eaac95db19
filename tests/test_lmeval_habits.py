"""lm-eval's habits and pytest's, as their users expect them: `--samples` (exactly the listed
documents), `--predict-only` (answers and samples, no scores), `--write-out` and `--show-config`
(printed once collection is done), and a marker per task and per group (`-m quiz_a`, `-m quiz`).

On the quiz project (tests/quiz_project.py: tasks quiz_a with 5 documents, quiz_b with 3, the
group quiz over both) with the `dummy:` model, and on the project's own evals/ for a library group.
"""

from __future__ import annotations

import json
import re

import pytest
from quiz_project import error_lines, read_json, read_jsonl, run, write_quiz
from test_plugin_cli import _evals

DUMMY = ("--model", "dummy:x")


def _quiz(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    write_quiz(pytester.path)
    return run(pytester, "evals", "--data-dir", "data", *args)


def _ids(result: pytest.RunResult) -> list[str]:
    """Document ids of a `--collect-only -q` listing, in order."""
    return [m.group(1) for line in result.outlines if (m := re.search(r"::test_\w+\[(.+)\]$", line))]


def _one_error(result: pytest.RunResult) -> str:
    shown = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, shown
    errors = error_lines(result)
    assert len(errors) == 1, result.errlines
    assert "Traceback" not in shown
    return errors[0]


# -- --samples ---------------------------------------------------------------------------------
def test_samples_selects_exactly_the_listed_documents(pytester: pytest.Pytester) -> None:
    listed = '{"quiz_a": [3, 1], "quiz_b": [2]}'
    result = _quiz(pytester, *DUMMY, "--samples", listed, "--collect-only", "-q")
    assert result.ret == 0, result.outlines[-10:]
    assert _ids(result) == ["quiz_a-1", "quiz_a-3", "quiz_b-2"]
    # a task it does not name keeps all its documents (lm-eval's samples.get(task) is None)
    result = run(pytester, "evals", "--data-dir", "data", "--samples", '{"quiz_b": [0]}', "--collect-only", "-q")
    assert _ids(result) == [f"quiz_a-{i}" for i in range(5)] + ["quiz_b-0"]


def test_samples_from_a_file_and_in_results(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    (pytester.path / "picked.json").write_text(json.dumps({"quiz_a": [4, 0]}))
    result = run(
        pytester, "--tasks", "quiz_a", "--data-dir", "data", *DUMMY, "--samples", "picked.json", "--output-path", "out"
    )
    assert result.ret == 0, result.outlines[-20:]
    result.assert_outcomes(passed=2)
    data = read_json(pytester.path / "out" / "results.json")
    assert data["n-samples"]["quiz_a"] == {"original": 5, "effective": 2}
    assert data["config"]["samples"] == {"quiz_a": [0, 4]}
    assert data["results"]["quiz_a"]["acc,none"] == 1.0  # documents 0 and 4: both right by the dummy's rule


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--samples", '{"quiz_c": [1]}'), "ERROR: --samples names 'quiz_c', which this run does not evaluate"),
        (("--samples", '{"quiz_a": [5]}'), "ERROR: --samples quiz_a: document 5 is out of range (the task has 5"),
        (("--samples", '{"quiz_a": [1]}', "--limit", "2"), "ERROR: --samples and --limit cannot be used together"),
        (("--samples", '{"quiz_a": 1}'), "ERROR: --samples '{\"quiz_a\": 1}': 'quiz_a' needs a list of document ids"),
        (("--samples", '{"quiz_a": [1,'), "ERROR: --samples '{\"quiz_a\": [1,': not JSON"),
        (("--samples", "nofile.json"), "ERROR: --samples 'nofile.json': neither a JSON object nor a file"),
        (("--predict-only", "--threshold", "quiz_a:acc>=0.5"), "ERROR: --predict-only scores nothing, and --threshold"),
        (("--predict_only", "--item-outcome", "correct"), "ERROR: --predict-only scores nothing, and --item-outcome"),
    ],
)
def test_bad_input_is_one_line(pytester: pytest.Pytester, args: tuple[str, ...], message: str) -> None:
    result = _quiz(pytester, *DUMMY, *args)
    assert _one_error(result).startswith(message)
    assert "loading" not in result.stdout.str()


# -- --predict-only ----------------------------------------------------------------------------
def test_predict_only_answers_and_logs_without_scores(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    # a body that would fail on every document: under --predict-only it does not run
    body = "import pytest_lmeval as lm\n\n\n@lm.benchmark('quiz')\ndef test_quiz(doc):\n"
    body += "    assert doc.score()['acc'] == 2\n"
    (pytester.path / "evals" / "quiz" / "test_quiz.py").write_text(body)
    result = run(pytester, "evals", "--data-dir", "data", *DUMMY, "--predict_only", "--output-path", "out")
    assert result.ret == 0, result.outlines[-20:]
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["lmeval: --predict-only: 8 documents answered and logged (samples/), none scored"])
    out = pytester.path / "out"
    data = read_json(out / "results.json")
    assert data["config"]["predict_only"] is True and data["config"]["log_samples"] is True
    for name, entry in data["results"].items():
        assert set(entry) == {"alias"}, (name, entry)  # no metric computed
    samples = read_jsonl(out / "samples" / "quiz_a.jsonl")
    assert [s["doc_id"] for s in samples] == [0, 1, 2, 3, 4]
    first = samples[0]
    assert first["metrics"] == [] and "acc" not in first
    assert first["resps"] == [[["-3.0", "False"]], [["-4.0", "False"]], [["-6.0", "False"]]]  # -len(" no"), ...
    assert first["arguments"]["gen_args_0"] == {"arg_0": "Q: Is water wet?\nA:", "arg_1": " no"}
    assert len(read_jsonl(out / "samples" / "quiz_b.jsonl")) == 3


# -- --write-out, --show-config ----------------------------------------------------------------
def test_write_out_and_show_config_print_at_collection_end(pytester: pytest.Pytester) -> None:
    result = _quiz(pytester, *DUMMY, "--write_out", "--show-config", "--collect-only", "-q", "-k", "quiz_a-2 or quiz_b")
    assert result.ret == 0, result.outlines[-20:]
    result.stdout.fnmatch_lines(
        [
            "*lmeval show_config*",
            "quiz_a:",
            "  task: quiz_a",
            "  dataset_path: local/quiz",
            "  doc_to_text: |-",
            "    Q: {{question}}",
            "    A:",
            "*",
            "  num_fewshot: 0",
            "quiz_b:",
            "*lmeval write_out*",
            "Task: quiz_a; document 2; context prompt (starting on next line):",
            "Q: Third Greek letter?",
            "A:",
            "(end of prompt on previous line)",
            "target (starting on next line):",
            "2 (gamma!)",
            "(end of target on previous line)",
            "Task: quiz_b; document 0; context prompt (starting on next line):",
            "Q: Seen at night?",
        ]
    )
    plain = _quiz(pytester, *DUMMY, "--collect-only", "-q")
    assert "write_out" not in plain.stdout.str() and "show_config" not in plain.stdout.str()


# -- markers -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("quiz_a", [f"quiz_a-{i}" for i in range(5)]),
        ("quiz", [f"quiz_a-{i}" for i in range(5)] + [f"quiz_b-{i}" for i in range(3)]),
        ("quiz and not quiz_a", [f"quiz_b-{i}" for i in range(3)]),
        ("lmeval and quiz_b", [f"quiz_b-{i}" for i in range(3)]),
        ("not quiz", []),
    ],
)
def test_m_selects_by_task_and_group(pytester: pytest.Pytester, expression: str, expected: list[str]) -> None:
    result = _quiz(pytester, "--strict-markers", "-m", expression, "--collect-only", "-q")
    assert not error_lines(result), result.errlines
    assert _ids(result) == expected


def test_m_selects_a_library_group(pytester: pytest.Pytester) -> None:
    """mmlu_anatomy is under mmlu_stem and mmlu; arc_easy is not."""
    args = ("--tasks", "mmlu_anatomy,arc_easy", "--limit", "2", "--collect-only", "-q", "--strict-markers")
    stem = _evals(pytester, *args, "-m", "mmlu_stem")
    assert _ids(stem) == ["mmlu_anatomy-0", "mmlu_anatomy-1"]
    arc = _evals(pytester, *args, "-m", "arc_easy or not mmlu")
    assert _ids(arc) == ["arc_easy-0", "arc_easy-1"]


def test_python_api_takes_samples_and_predict_only(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pytest_lmeval as lm

    write_quiz(tmp_path)
    monkeypatch.chdir(tmp_path)
    common = {"include_path": "evals", "data_dir": "data", "no_cache": True, "write_reports": False}
    result = lm.evaluate("dummy:x", "quiz_a,quiz_b", samples={"quiz_a": [2], "quiz_b": [0, 1]}, **common)
    assert [(r["task"], r["doc_id"]) for r in result.records] == [("quiz_a", 2), ("quiz_b", 0), ("quiz_b", 1)]
    predicted = lm.evaluate("dummy:x", "quiz_b", predict_only=True, **common)
    assert [r["metrics"] for r in predicted.records] == [{}, {}, {}]
    assert all(r["predict_only"] and r["samples"] for r in predicted.records)
