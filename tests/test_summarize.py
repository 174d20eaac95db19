"""`python -m pytest_lmeval.report summarize reports/`: every run found in one table (markdown,
JSON, LaTeX) by task and metric, and an HTML index linking each run's report."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from quiz_project import read_json, run, write_quiz

from pytest_lmeval.report import summarize


def test_summarize_tables_every_run_found(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    args = ("evals", "--data-dir", "data")
    assert run(pytester, *args, "--model", "dummy:first", "--output-path", "reports/first/run").ret == 0
    assert run(pytester, *args, "--model", "dummy:second", "--output-path", "reports/second/run").ret == 0
    out = pytester.run(sys.executable, "-m", "pytest_lmeval.report", "summarize", "reports", "-o", "summary")
    assert out.ret == 0, out.stderr.str()
    first = read_json(pytester.path / "reports" / "first" / "run" / "results.json")
    folder = pytester.path / "summary"
    md = (folder / "summary.md").read_text().splitlines()
    header = md[0].split("|")[1:-1]
    assert header[:2] == ["Task", "Metric"] and len(header) == 4
    assert header[2].startswith("dummy:first (") and header[3].startswith("dummy:second (")
    row = next(line for line in md if line.startswith("|quiz_a|acc,none|"))
    assert row == f"|quiz_a|acc,none|{first['results']['quiz_a']['acc,none']:.4f}|0.6000|"
    assert any(line.startswith("|quiz|ece_10_bin,none|") for line in md)  # calibration too
    data = json.loads((folder / "summary.json").read_text())
    assert [r["model"] for r in data["runs"]] == ["dummy:first", "dummy:second"]
    assert [r["folder"] for r in data["runs"]] == ["first/run", "second/run"]
    acc = next(r for r in data["rows"] if r["task"] == "quiz_b" and r["metric"] == "acc,none")
    assert acc["values"] == [pytest.approx(1 / 3)] * 2 and acc["stderrs"][0] == pytest.approx(1 / 3)
    tex = (folder / "summary.tex").read_text()
    assert tex.startswith("\\begin{tabular}{llrr}") and "quiz\\_a & acc,none & 0.6000 & 0.6000 \\\\" in tex
    page = (folder / "index.html").read_text()
    runs_list = re.search(r'<ul class="runs">(.*?)</ul>', page, re.S).group(1)
    assert re.findall(r'<a href="([^"]+)">', runs_list) == [
        "../reports/first/run/report.html",
        "../reports/second/run/report.html",
    ]
    assert (folder / "../reports/first/run/report.html").resolve().is_file()
    # the revision from the model fingerprint: a hub commit, else the local weights' hash
    assert summarize._revision({"config": {"model_fingerprint": {"commit": "0123456789abcdef"}}}) == "0123456789ab"
    local = {"config": {"model_fingerprint": {"weights_sha256": "224d0cd3feb3ce9b"}}}
    assert summarize._revision(local) == "sha256:224d0cd3feb3"
    assert summarize.Run(folder, "hf:m", "sha256:224d0cd3feb3", "2026-12-01T08:31:00", {}).label == (
        "hf:m@sha256:224d0cd3feb3 (2026-12-01 08:31)"
    )
    assert summarize.Run(folder, "hf:m", "", "2026-12-01T08:31:00", {}, args="dtype=float32").label == (
        "hf:m [dtype=float32] (2026-12-01 08:31)"
    )
    missing = pytester.run(sys.executable, "-m", "pytest_lmeval.report", "summarize", "nowhere")
    assert missing.ret == 2 and "not a folder: nowhere" in missing.stderr.str()


OUTER = """\
group: outer
task: [quiz]
aggregate_metric_list:
  - metric: acc
metadata:
  version: 1
"""


def test_report_bars_carry_their_interval_and_each_task_is_charted_once(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    (pytester.path / "evals" / "quiz" / "_outer.yaml").write_text(OUTER)
    assert (
        run(
            pytester, "evals", "--data-dir", "data", "--model", "dummy:d", "--tasks", "outer", "--output-path", "out"
        ).ret
        == 0
    )
    page = (pytester.path / "out" / "report.html").read_text()
    charts = dict(re.findall(r'<svg[^>]*aria-label="([^"]+) per subtask"(.*?)</svg>', page, re.S))
    assert sorted(charts) == ["outer: acc,none", "quiz: acc,none"]
    assert charts["outer: acc,none"].count('class="bar"') == 1  # the group quiz, not its tasks again
    quiz = charts["quiz: acc,none"]
    assert quiz.count('class="bar"') == 2 and quiz.count('<line class="ci"') == 2
    # acc 3 of 5 with stderr sqrt(0.6 * 0.4 / 4); 1 of 3 with sqrt(1/3 * 2/3 / 2)
    assert f"0.6000 \u00b1{1.96 * (0.6 * 0.4 / 4) ** 0.5:.3f} (n=5)" in quiz
    assert f"0.3333 \u00b1{1.96 * (1 / 3 * 2 / 3 / 2) ** 0.5:.3f} (n=3)" in quiz
    half = 1.96 * (0.6 * 0.4 / 4) ** 0.5
    assert f"95% interval [{0.6 - half:.4f}, {0.6 + half:.4f}]" in quiz


def _run(folder: str, model: str, date: str, args: str = "") -> summarize.Run:
    return summarize.Run(Path(folder), model, "", date, {}, args=args)


def test_labels_are_distinct_by_arguments_then_seconds_then_folder() -> None:
    runs = [
        _run("a/1", "dummy:x", "2026-12-07T09:31:05"),
        _run("a/2", "dummy:x", "2026-12-07T09:31:40"),
        _run("b/1", "dummy:x", "2026-12-07T09:31:40"),
        _run("c/1", "dummy:x", "2026-12-07T09:31:40", args="delay=0.1"),
        _run("d/1", "dummy:y", "2026-12-07T09:31:40"),
    ]
    summarize.distinct_labels(runs)
    assert [r.label for r in runs] == [
        "dummy:x (2026-12-07 09:31:05)",
        "dummy:x (2026-12-07 09:31:40, 2)",
        "dummy:x (2026-12-07 09:31:40, 1)",
        "dummy:x [delay=0.1] (2026-12-07 09:31)",
        "dummy:y (2026-12-07 09:31)",
    ]
    assert summarize.doc_link("a/report.html", "quiz_a", 3) == "a/report.html#doc=quiz_a/3"


ECHO = """
import pytest_lmeval as lm

ROWS = [{"w": "Paris", "t": "Paris"}, {"w": "rome", "t": "rome"}, {"w": "x", "t": "y"}]
echo = lm.generate("echo", data=lm.rows(ROWS), prompt="{w}", target=lambda d: d["t"], until=["\\n"],
                   metrics=["exact_match"])

@lm.benchmark(echo)
def test_echo(doc):
    doc.score()
"""


def test_index_groups_by_task_and_by_model_and_links_documents(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    pytester.makepyfile(test_echo=ECHO)
    quiz = ("evals", "--data-dir", "data")
    assert run(pytester, *quiz, "--model", "dummy:x", "--output-path", "reports/x1").ret == 0
    assert run(pytester, *quiz, "--model", "dummy:x", "--model-args", "delay=0", "--output-path", "reports/x2").ret == 0
    echo = ("test_echo.py", "--data-dir", "data", "--model", "dummy:y", "--perturb", "lowercase")
    echo += ("--output-path", "reports/y1")
    assert run(pytester, *echo).ret == 0
    out = pytester.run(sys.executable, "-m", "pytest_lmeval.report", "summarize", "reports")
    assert out.ret == 0, out.stderr.str()
    data = json.loads((pytester.path / "reports" / "summary.json").read_text())
    labels = [r["label"] for r in data["runs"]]
    assert len(set(labels)) == 3 and labels[1].startswith("dummy:x [delay=0] (")
    assert [r["model_args"] for r in data["runs"]] == ["", "delay=0", ""]
    page = (pytester.path / "reports" / "index.html").read_text()
    # a table per task, a row per run; a table per model, a row per task
    tables = r'<h3 id="task-([^"]+)">.*?</h3>\s*(<table class="summary by-task">.*?</table>)'
    by_task = dict(re.findall(tables, page, re.S))
    assert list(by_task) == ["quiz", "quiz_a", "quiz_b", "echo"]
    quiz_rows = re.findall(r"<tr><td><a href=\"([^\"]+)\">([^<]+)</a></td>", by_task["quiz_a"])
    assert quiz_rows == [("x1/report.html", labels[0]), ("x2/report.html", labels[1]), ("y1/report.html", labels[2])]
    echo_table = by_task["echo"]
    assert echo_table.count("<tr><td>") == 1  # only dummy:y ran echo (all three ran the quiz in evals/)
    # the documents that flipped under lowercase link to the run's report, one document each
    assert re.findall(r'<a class="doc" href="([^"]+)" title="([^"]+)">([^<]+)</a>', echo_table) == [
        ("y1/report.html#doc=echo/0", "lowercase: to wrong", "echo-0")
    ]
    models = re.findall(r"<h3>([^<]+)</h3>\s*<table class=\"summary by-model\">(.*?)</table>", page, re.S)
    assert [m for m, _ in models] == ["dummy:x", "dummy:x [delay=0]", "dummy:y"]
    x_rows = re.findall(r'<tr><td><a href="x1/report.html">([^<]+)</a></td>', models[0][1])
    assert x_rows == ["quiz", "quiz_a", "quiz_b"]
