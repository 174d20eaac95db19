"""Benchmarks written as pytest files with the declaration API, as a user writes and runs them:
the README's two examples exactly as printed, assertions that fail items and count in
pass_rate (also under -n 2), a broken scorer failing in the call phase, local and inline data,
and the library's files being our own (none equals a file of the installed lm-eval).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "evals" / "README.md"


def _readme_files() -> dict[str, str]:
    """The README's code blocks that name a file (```python file=test_x.py)."""
    text = README.read_text(encoding="utf-8")
    return {m.group(1): m.group(2) for m in re.finditer(r"```\w+ file=(\S+)\n(.*?)```", text, re.S)}


def _results(path: Path) -> dict:
    return json.loads(path.read_text())["results"]


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "--no-cache", "--model", "dummy:d", *args)


def test_readme_multiple_choice_example_runs_as_printed(pytester: pytest.Pytester) -> None:
    files = _readme_files()
    for name in ("colors.jsonl", "test_colors.py"):
        pytester.path.joinpath(name).write_text(files[name])
    result = _run(pytester, "test_colors.py", "--output-path", "out", "-v")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*test_colors.py::test_colors[[]colors-1[]] PASSED*", "*3 passed*"])
    # dummy: the shortest choice is the most likely (acc); acc_norm picks the longest
    # sky: green/blue/red -> red (wrong), acc_norm green (wrong); snow: white/black/orange ->
    # white (right), acc_norm orange (wrong); tomatoes: purple/grey/red -> red (right), acc_norm purple.
    res = _results(pytester.path / "out" / "results.json")["colors"]
    assert res["acc,none"] == pytest.approx(2 / 3)
    assert res["acc_norm,none"] == 0.0


def test_readme_generative_example_fails_items_and_reports_pass_rate(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("test_capitals.py").write_text(_readme_files()["test_capitals.py"])
    result = _run(pytester, "test_capitals.py", "--output-path", "out", "--threshold", "capitals:pass_rate>=0.5")
    # the dummy repeats the prompt ("The capital of France is"): no capital in any answer
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*def test_capital(doc):*",
            '>*assert doc[[]"capital"[]] in doc.answer',
            "E*AssertionError: assert 'Paris' in 'The capi'*",
            "test_capitals.py:*: AssertionError",
        ]
    )
    result.assert_outcomes(failed=4, passed=0)  # three documents and the gate
    res = _results(pytester.path / "out" / "results.json")["capitals"]
    assert res["pass_rate,none"] == 0.0
    assert res["exact_match,none"] == 0.0
    gates = json.loads((pytester.path / "out" / "results.json").read_text())["gates"]
    assert [(g["name"], g["passed"]) for g in gates] == [("gate[capitals:pass_rate>=0.5]", False)]


BENCH = """
import pytest_lmeval as lm

ROWS = [{"q": f"Is {i} even?", "yes": i % 2 == 0} for i in range(8)]

parity = lm.multiple_choice(
    "parity",
    data=lm.rows(ROWS),
    prompt="{q}",
    choices=["no", "yes!"],
    target=lambda doc: int(doc["yes"]),
)


@lm.benchmark(parity)
def test_parity(doc):
    doc.score()
    assert doc.answer == "no", f"{doc.id} chose {doc.answer}"
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "two workers"])
def test_failed_assertion_counts_in_pass_rate_and_keeps_other_metrics_and_gates(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    pytester.path.joinpath("test_parity.py").write_text(BENCH)
    result = _run(pytester, "test_parity.py", "--output-path", "out", "--threshold", "parity:acc>=0.5", "-rf", *workers)
    # the dummy picks the shorter choice, "no", every time: the assertion always holds, and
    # acc is right on the four odd numbers
    assert result.ret == 0
    res = _results(pytester.path / "out" / "results.json")["parity"]
    assert res["pass_rate,none"] == 1.0
    assert res["acc,none"] == 0.5

    pytester.path.joinpath("test_parity.py").write_text(BENCH.replace('doc.answer == "no"', "doc.correct"))
    result = _run(pytester, "test_parity.py", "--output-path", "out2", "--threshold", "parity:acc>=0.5", *workers)
    assert result.ret == 1  # the even documents fail their assertion; the gate still passes
    result.assert_outcomes(failed=4, passed=5)
    result.stdout.fnmatch_lines(["*FAILED test_parity.py::test_parity[[]parity-0[]]*"])
    doc = json.loads((pytester.path / "out2" / "results.json").read_text())
    assert doc["results"]["parity"]["pass_rate,none"] == 0.5
    assert doc["results"]["parity"]["acc,none"] == 0.5
    assert doc["results"]["parity"]["acc_norm,none"] == 0.5
    assert [(g["name"], g["passed"]) for g in doc["gates"]] == [("gate[parity:acc>=0.5]", True)]
    assert doc["not_scored"] == []


BROKEN = """
import pytest_lmeval as lm


@lm.metric
def third(doc, lls):
    return lls[2]  # the documents have two choices


parity = lm.multiple_choice(
    "parity", data=lm.rows([{"q": "Is 3 even?"}]), prompt="{q}", choices=["no", "yes"], target=0, metrics=[third]
)


@lm.benchmark(parity)
def test_parity(doc):
    doc.score()
"""


def test_a_broken_scorer_fails_the_item_in_the_call_phase(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("test_broken.py").write_text(BROKEN)
    result = _run(pytester, "test_broken.py", "--output-path", "out")
    assert result.ret == 1
    result.assert_outcomes(failed=1, errors=0)
    result.stdout.fnmatch_lines(
        [
            ">*doc.score()",
            "test_broken.py:17: *",
            ">*return lls[[]2[]]*",
            "E*IndexError*",
            "test_broken.py:7: IndexError",
        ]
    )
    doc = json.loads((pytester.path / "out" / "results.json").read_text())
    assert [(f["task"], f["doc_id"]) for f in doc["not_scored"]] == [("parity", 0)]
    assert "IndexError" in doc["not_scored"][0]["error"]


def test_local_csv_and_parquet_and_tasks_by_name_from_a_file_on_the_command_line(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("qs.csv").write_text("q,a\nTwo plus two?,4\nThree plus one?,4\n")
    pytester.path.joinpath("test_sums.py").write_text(
        "import pytest_lmeval as lm\n\n"
        'sums = lm.generate("sums", data=lm.local("qs.csv"), prompt="{q}\\n{a}", target="a", until=["\\n"])\n\n\n'
        "@lm.benchmark(sums)\ndef test_sums(doc):\n    doc.score()\n"
    )
    # the dummy repeats the prompt's last line: the answer itself
    result = _run(pytester, "test_sums.py", "--tasks", "sums", "--output-path", "out")
    assert result.ret == 0
    assert _results(pytester.path / "out" / "results.json")["sums"]["exact_match,none"] == 1.0
    result = _run(pytester, "test_sums.py", "--tasks", "nope")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["ERROR: unknown task 'nope'*"])


def test_a_catalogue_task_named_in_a_benchmark_file(pytester: pytest.Pytester) -> None:
    pytest.importorskip("lm_eval")
    pytester.path.joinpath("test_mine.py").write_text(
        'import pytest_lmeval as lm\n\n\n@lm.benchmark("arc_easy")\ndef test_mine(doc):\n    doc.score()\n'
    )
    result = pytester.runpytest("test_mine.py", "--collect-only", "-q", "--limit", "2", "--data-dir",
                                str(ROOT.parent / "shared" / "data"))  # fmt: skip
    if not (ROOT.parent / "shared" / "data").is_dir():
        pytest.skip("needs the shared benchmark mirror")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["*test_mine.py::test_mine[[]arc_easy-0[]]", "*test_mine.py::test_mine[[]arc_easy-1[]]"]
    )


def _digests(folder: Path) -> dict[str, Path]:
    return {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in folder.rglob("*") if p.is_file()}


def test_no_file_of_ours_equals_a_file_of_lm_eval() -> None:
    lm_eval = pytest.importorskip("lm_eval")
    theirs = _digests(Path(lm_eval.__file__).parent)
    ours = {**_digests(ROOT / "evals"), **_digests(ROOT / "pytest_lmeval")}
    empty = hashlib.sha256(b"").hexdigest()
    copies = sorted(str(p.relative_to(ROOT)) for h, p in ours.items() if h in theirs and h != empty)
    assert copies == [], f"files identical to lm-eval's: {copies}"


def test_the_wheel_lists_every_package() -> None:
    """pyproject names the packages one by one (the library maps evals/ to its own name): a
    new subpackage missing there would be missing from the wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "pytest_lmeval").rglob("__init__.py")}
    assert found | {"pytest_lmeval_evals"} == listed


def test_tasks_without_paths_run_the_library_not_the_project_tests(pytester: pytest.Pytester) -> None:
    """`pytest --tasks boolq` inside a project with its own tests and testpaths runs boolq's
    documents from the installed library, and none of the project's tests."""
    if not (ROOT.parent / "shared" / "data").is_dir():
        pytest.skip("needs the shared benchmark mirror")
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    pytester.mkdir("tests").joinpath("test_unit.py").write_text("def test_unit():\n    assert False\n")
    result = _run(pytester, "--tasks", "boolq", "--limit", "2", f"--data-dir={ROOT.parent / 'shared' / 'data'}",
                  "--output-path", "out")  # fmt: skip
    assert result.ret == 0
    result.assert_outcomes(passed=2)
    assert (pytester.path / "out" / "results.json").is_file()


def test_a_body_that_swallows_a_scoring_error_still_leaves_the_document_unscored(pytester: pytest.Pytester) -> None:
    body = "    try:\n        doc.score()\n    except IndexError:\n        pass\n    assert doc.answer\n"
    pytester.path.joinpath("test_broken.py").write_text(BROKEN.replace("    doc.score()\n", body))
    result = _run(pytester, "test_broken.py", "--output-path", "out")
    assert result.ret == 1
    result.assert_outcomes(failed=1)
    assert "During handling of the above exception" not in result.stdout.str()
    doc = json.loads((pytester.path / "out" / "results.json").read_text())
    assert [(f["doc_id"], f["error"]) for f in doc["not_scored"]] == [(0, "IndexError: list index out of range")]
