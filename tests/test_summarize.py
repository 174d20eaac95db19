"""`python -m pytest_lmeval.report summarize reports/`: every run found in one table (markdown,
JSON, LaTeX) by task and metric, and an HTML index linking each run's report."""

from __future__ import annotations

import json
import re
import sys

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
    assert re.findall(r'<a href="([^"]+)">', page) == [
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
