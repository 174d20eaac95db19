"""Threshold and gates-file gates as a CI user sees them: the exit code, the terminal's gate
lines and FAILED entry, a JUnit test case per gate, results.json's `gates`; also under -n 2.
And `--item-outcome=correct`, which fails the documents the model got wrong."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from benchmark_source import benchmark_source  # noqa: E402
from golden_project import accuracy, has_lines, read_json, run, write_project

# golden_a: 10 documents, 6 right; golden_b: 6 documents, 3 right (first run's variant)
A = [(i % 5 < 3, True) for i in range(10)]
B = [(i % 2 == 0, True) for i in range(6)]
ACC_A = accuracy(A, 0)  # 0.6
ACC_GROUP = (6 + 3) / 16


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    write_project(pytester.path, A, B)
    return pytester


def _junit_cases(path) -> dict[str, ET.Element]:
    return {c.get("name"): c for c in ET.parse(path).getroot().iter("testcase")}


def test_a_passing_threshold_exits_0(project: pytest.Pytester) -> None:
    res = run(project, "--output-path", "out", "--threshold", "golden_a:acc>=0.55")
    assert res.ret == 0
    has_lines(
        res,
        "lmeval gates",
        f"PASS gate[golden_a:acc>=0.55]: golden_a:acc = {ACC_A:.4f}, required >= 0.5500",
        "17 passed",  # 16 documents and the gate
    )
    assert read_json(project.path / "out" / "results.json")["gates"][0]["passed"] is True


def test_a_failing_threshold_shows_its_figures_everywhere(project: pytest.Pytester) -> None:
    res = run(project, "--output-path", "out", "--threshold", "golden:acc>=0.6", "--junitxml", "junit.xml")
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    summary = f"golden:acc = {ACC_GROUP:.4f}, required >= 0.6000"
    has_lines(
        res,
        f"FAIL gate[golden:acc>=0.6]: {summary}",
        "FAILED lmeval-gates::gate[golden:acc>=0.6]",
        "1 failed, 16 passed",
    )

    case = _junit_cases(project.path / "junit.xml")["gate[golden:acc>=0.6]"]
    assert case.get("classname") == "lmeval-gates"
    assert summary in case.find("failure").get("message")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert float(props["value"]) == pytest.approx(ACC_GROUP) and props["min"] == "0.6"

    assert read_json(project.path / "out" / "results.json")["gates"] == [
        {
            "name": "gate[golden:acc>=0.6]",
            "passed": False,
            "summary": summary,
            "task": "golden",
            "metric": "acc",
            "value": pytest.approx(ACC_GROUP),
            "min": 0.6,
            "max": None,
        }
    ]


def test_upper_bounds_and_a_metric_never_measured(project: pytest.Pytester) -> None:
    res = run(
        project,
        "--output-path",
        "out",
        "--threshold",
        "golden_b:acc_norm<=0",
        "--threshold",
        "golden_b:acc<=0.4",
        "--threshold",
        "golden_b:f1>=0.1",
    )
    assert res.ret == 1
    has_lines(
        res,
        "PASS gate[golden_b:acc_norm<=0]: golden_b:acc_norm = 0.0000, required <= 0.0000",
        "FAIL gate[golden_b:acc<=0.4]: golden_b:acc = 0.5000, required <= 0.4000",
        "FAIL gate[golden_b:f1>=0.1]: golden_b:f1 was not measured in this run",
        "2 failed, 17 passed",
    )


def test_gates_file_min_max_and_relative_tolerance(project: pytest.Pytester) -> None:
    project.path.joinpath("gates.yaml").write_text(
        "gates:\n"
        "  - {task: golden_a, metric: acc, min: 0.5, max: 0.7}\n"
        "  - {task: golden, metric: acc, reference: 0.6, rel_tol: 0.05}\n"  # needs >= 0.57
        "  - {task: golden_b, metric: acc_norm, reference: 0.0, rel_tol: 0.1, lower_is_better: true}\n"
    )
    res = run(project, "--output-path", "out", "--gates", "gates.yaml")
    assert res.ret == 1
    has_lines(
        res,
        "PASS gate[golden_a:acc>=0.5 and <=0.7]: golden_a:acc = 0.6000, required >= 0.5000 and <= 0.7000",
        f"FAIL gate[golden:acc>=0.6*(1-0.05)]: golden:acc = {ACC_GROUP:.4f}, required >= 0.5700",
        "PASS gate[golden_b:acc_norm<=0*(1+0.1)]",
    )
    # the same file from the ini file, relative to the rootdir
    project.path.joinpath("pytest.ini").write_text("[pytest]\nlmeval_evals_dir = evals\nlmeval_gates = gates.yaml\n")
    assert run(project, "--output-path", "out2").ret == 1


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("gates:\n  - {task: golden_a, metric: acc, min: 0.5\n", "gates.yaml:3: invalid YAML: *"),
        (
            "gates:\n  - {task: golden_a, metric: acc, minimum: 0.5}\n",
            "gates.yaml: gate 1 (golden_a:acc): unknown keys *minimum*",
        ),
        ("gates:\n  - {task: golden_a, metric: acc}\n", "*gate 1 (golden_a:acc) needs min, max, or reference"),
        ("- {task: golden_a}\n", "*expected a top-level 'gates:' list*"),
    ],
)
def test_a_bad_gates_file_stops_before_the_model_loads(project: pytest.Pytester, text: str, error: str) -> None:
    project.path.joinpath("gates.yaml").write_text(text)
    res = run(project, "--gates", "gates.yaml", "--model-args", "fail_on=Q")  # a model run would fail
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines([f"ERROR: {error}"])


@pytest.mark.parametrize("text", ["golden:acc>0.5", "golden acc>=0.5", "golden:acc>=high"])
def test_a_malformed_threshold_is_a_usage_error(project: pytest.Pytester, text: str) -> None:
    res = run(project, "--threshold", text)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines([f"ERROR: --threshold '{text}': expected TASK:METRIC>=VALUE or TASK:METRIC<=VALUE*"])


def test_thresholds_from_the_ini_file(project: pytest.Pytester) -> None:
    project.path.joinpath("pytest.ini").write_text(
        "[pytest]\nlmeval_evals_dir = evals\nlmeval_threshold =\n    golden_a:acc>=0.5\n    golden_b:acc>=0.9\n"
    )
    res = run(project, "--output-path", "out")
    assert res.ret == 1
    has_lines(res, "PASS gate[golden_a:acc>=0.5]", "FAIL gate[golden_b:acc>=0.9]")


def test_gates_hold_under_xdist(project: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    res = run(
        project,
        "-n",
        "2",
        "--output-path",
        "out",
        "--junitxml",
        "junit.xml",
        "--threshold",
        "golden:acc>=0.6",
        "--threshold",
        "golden_a:acc>=0.6",
    )
    assert res.ret == 1
    has_lines(res, "FAIL gate[golden:acc>=0.6]", "PASS gate[golden_a:acc>=0.6]", "1 failed, 17 passed")
    cases = _junit_cases(project.path / "junit.xml")
    assert cases["gate[golden:acc>=0.6]"].find("failure") is not None
    assert cases["gate[golden_a:acc>=0.6]"].find("failure") is None
    assert [g["passed"] for g in read_json(project.path / "out" / "results.json")["gates"]] == [False, True]


# -- --item-outcome -----------------------------------------------------------------------------
def test_items_pass_when_scored_by_default(project: pytest.Pytester) -> None:
    run(project, "--output-path", "out").assert_outcomes(passed=16)


def test_item_outcome_correct_fails_exactly_the_wrong_documents(project: pytest.Pytester) -> None:
    res = run(project, "--output-path", "out", "--item-outcome", "correct", "-rf")
    res.assert_outcomes(passed=9, failed=7)
    wrong = [f"golden_a-{i}" for i, (ok, _) in enumerate(A) if not ok] + [
        f"golden_b-{i}" for i, (ok, _) in enumerate(B) if not ok
    ]
    failed = sorted(line.split("[")[1].split("]")[0] for line in res.outlines if line.startswith("FAILED"))
    assert failed == sorted(wrong)
    res.stdout.fnmatch_lines(["*golden_a-3 answered wrong (acc=0, acc_norm=0)"])
    # results are still written: the run's numbers do not depend on the items' outcome
    assert read_json(project.path / "out" / "results.json")["results"]["golden"]["acc,none"] == pytest.approx(ACC_GROUP)


def test_item_outcome_from_the_ini_file(project: pytest.Pytester) -> None:
    project.path.joinpath("pytest.ini").write_text(
        "[pytest]\nlmeval_evals_dir = evals\nlmeval_item_outcome = correct\n"
    )
    run(project, "--output-path", "out").assert_outcomes(passed=9, failed=7)
    run(project, "--output-path", "out", "--item-outcome", "scored").assert_outcomes(passed=16)


GEN_YAML = """\
task: echo
dataset_path: local/echo
output_type: generate_until
test_split: test
doc_to_text: "{{q}}\\n{{say}}"
doc_to_target: answer
generation_kwargs:
  until: ["\\n"]
"""
ROLLING_YAML = """\
task: pages
dataset_path: local/echo
output_type: loglikelihood_rolling
test_split: test
doc_to_text: ""
doc_to_target: "{{q}}"
"""


def test_item_outcome_correct_for_generation_and_metrics_without_a_right_answer(pytester: pytest.Pytester) -> None:
    """The dummy repeats the prompt's last line: right where `say` is the answer. Perplexity
    has no right or wrong, so its items pass."""
    folder = pytester.path / "evals" / "echo"
    folder.mkdir(parents=True)
    (folder / "echo.yaml").write_text(GEN_YAML)
    (folder / "pages.yaml").write_text(ROLLING_YAML)
    (folder / "test_echo.py").write_text(benchmark_source("echo", "echo", "pages"))
    data = pytester.path / "data" / "local" / "echo" / "default"
    data.mkdir(parents=True)
    docs = [{"q": "first", "say": "4", "answer": "4"}, {"q": "second", "say": "5", "answer": "6"}]
    (data / "test.jsonl").write_text(
        "".join(f'{{"q": "{d["q"]}", "say": "{d["say"]}", "answer": "{d["answer"]}"}}\n' for d in docs)
    )
    pytester.makeini("[pytest]\nlmeval_evals_dir = evals\n")
    res = pytester.runpytest(
        "evals",
        "-p",
        "no:cacheprovider",
        "--no-cache",
        "--model",
        "dummy:m",
        "--data-dir",
        "data",
        "--output-path",
        "out",
        "--item-outcome",
        "correct",
        "-v",
    )
    res.assert_outcomes(passed=3, failed=1)
    res.stdout.fnmatch_lines(["*test_echo[[]echo-1[]] FAILED*", "*echo-1 answered wrong (exact_match=0)"])
