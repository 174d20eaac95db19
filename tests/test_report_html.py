"""report.html, pytest-html's summary, the comparison page, atomic writes, and the report in a
real headless browser (Debian's chromium; that test skips only where chromium is missing)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from golden_project import run, use_variant, write_project
from headless import Browser, needs_chromium
from mirror import ROOT, shared_mirror

from pytest_lmeval.core import files as files_module
from pytest_lmeval.core.files import atomic_write

# Imported once here: a baseline comparison imports scipy.stats inside pytester's in-process run,
# which drops it afterwards, and numpy's extension modules cannot be imported twice in one process.
pytest.importorskip("scipy.stats")

A = [(True, False)] * 14 + [(False, True)] * 2 + [(True, True)] * 16 + [(False, False)] * 8
B = [(True, False)] * 3 + [(False, True)] * 1 + [(True, True)] * 10 + [(False, False)] * 6


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    write_project(pytester.path, A, B)
    assert run(pytester, "--output-path", "ckpt1/run", "--log-samples").ret == 0
    use_variant(pytester.path, "b")
    return pytester


def assert_self_contained(page: str) -> None:
    """Nothing the page would fetch: no script file (its own scripts are inline), no external
    link, stylesheet, image or font."""
    assert re.findall(r"<script[^>]*\bsrc\s*=", page) == []
    assert "@import" not in page and "url(" not in page and "fetch(" not in page
    assert re.findall(r'\b(?:src|href)\s*=\s*"(?!#)', page) == []
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {"http://www.w3.org/2000/svg"}


def test_report_html_shows_results_gates_differences_and_flipped_documents(project: pytest.Pytester) -> None:
    res = run(project, "--output-path", "ckpt2/run", "--baseline", "ckpt1/run", "--threshold", "golden:acc>=0.4")
    assert res.ret == 1
    page = (project.path / "ckpt2" / "run" / "report.html").read_text()
    assert_self_contained(page)
    assert "1 of 3 gates failed" in page
    assert "<td>dummy:m</td>" in page or "dummy:m" in page
    # results with stderr, the group's bar chart
    assert re.search(r"<td>golden</td>.*?<td>acc</td>.*?0\.4833.*?± 0\.0", page, re.S)
    assert 'aria-label="golden: acc,none per subtask"' in page
    # gates with their figures
    assert "gate[golden:acc&gt;=0.4]" in page and "baseline[golden:acc]" in page
    assert "golden:acc 0.7167 -&gt; 0.4833: -23.33 points (95% CI" in page
    # differences with intervals: a forest plot per metric, its failed gate in red
    chart = re.search(r'<svg[^>]*aria-label="acc,none: difference to the baseline, 95% interval".*?</svg>', page, re.S)
    assert chart and chart.group(0).count('<line class="ci fail"') == 1 and chart.group(0).count("<circle") == 3
    # flipped documents: both answers, the target and the prompt
    row = re.search(r'<tr id="golden_a-0">.*?</tr>', page, re.S).group(0)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    assert cells[:5] == ['<a href="#doc=golden_a/0">golden_a-0</a>', "right before, wrong now", "y", "n", "x0x"]
    assert "Q: question 0\nA:" in cells[5]
    assert 'id="golden_b-3"' in page  # gained, in the group's list
    assert '-k "[golden_a-0] or [golden_a-1]' in page


def test_pytest_html_report_carries_the_summary(project: pytest.Pytester) -> None:
    pytest.importorskip("pytest_html")
    res = run(project, "--output-path", "out", "--threshold", "golden:acc>=0.9", "--html", "ph.html")
    assert res.ret == 1
    page = (project.path / "ph.html").read_text()
    fragment = re.search(r'<div class="lmeval">.*?</div>', page, re.S).group(0)
    assert "Gates: 0 of 1 passed" in fragment and "gate[golden:acc&gt;=0.9]" in fragment
    assert "<td>golden_a</td>" in fragment.replace(" - golden_a", "golden_a")
    assert ".lmeval table" in fragment  # styles scoped to the fragment, pytest-html's page left alone


def test_compare_charts_each_metric_across_runs(project: pytest.Pytester) -> None:
    assert run(project, "--output-path", "ckpt2/run").ret == 0
    out = project.run(sys.executable, "-m", "pytest_lmeval.report", "compare", "ckpt1/run", "ckpt2/run", "-o", "c.html")
    assert out.ret == 0
    page = (project.path / "c.html").read_text()
    assert_self_contained(page)
    labels = re.findall(r'aria-label="([^"]+)"', page)
    assert "ece_10_bin,none across runs" in labels  # calibration (tests/test_calibration.py) is charted too
    assert [x for x in labels if x.startswith("acc")] == [
        "acc,none across runs",
        "acc,none: golden&#x27;s members across runs",
        "acc_norm,none across runs",
        "acc_norm,none: golden&#x27;s members across runs",
    ]
    # two runs in folders of the same name are told apart by their parents
    assert "ckpt1/run" in page and "ckpt2/run" in page
    row = re.search(r"<tr><td>acc,none</td><td>golden</td>.*?</tr>", page).group(0)
    assert re.findall(r"(\d\.\d{4}) ±", row) == ["0.7167", "0.4833"]
    missing = project.run(sys.executable, "-m", "pytest_lmeval.report", "compare", "ckpt1/run", "nowhere")
    assert missing.ret == 2
    assert "no results.json in: nowhere" in missing.stderr.str()


def test_atomic_write_never_leaves_a_half_written_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "results.json"
    atomic_write(target, '{"old": true}\n')
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it, not owner-only

    def crash(src: str, dst: Path) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(files_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write(target, '{"new": true}\n')
    assert target.read_text() == '{"old": true}\n'
    assert os.listdir(tmp_path) == ["results.json"]  # the temporary file is gone too


# -- in a real browser ----------------------------------------------------------------------------
def _mmlu_mirror(folder: Path) -> Path:
    """The shared mirror where there is one; else two made-up rows per MMLU subject (test and
    dev splits, in cais/mmlu's columns), enough for the report's structure."""
    shared = shared_mirror()
    if shared is not None and (shared / "cais" / "mmlu").is_dir():
        return shared
    for yaml in sorted((ROOT / "evals" / "mmlu").glob("mmlu_*.yaml")):
        subject = re.search(r'"dataset_name": "([^"]+)"', yaml.read_text()).group(1)
        for split in ("test", "dev"):
            path = folder / "cais" / "mmlu" / subject / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            choices = ["1", "2", "3", "4"]
            rows = [
                {"question": f"{subject} {split} {i}?", "subject": subject, "choices": choices, "answer": i}
                for i in range(5)
            ]
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@needs_chromium
def test_mmlu_report_renders_in_chromium_with_the_57_subjects_chart(tmp_path: Path) -> None:
    out = ROOT / "reports" / "ci-artifacts" / "mmlu-report"  # kept: CI keeps it as an artifact
    shutil.rmtree(out, ignore_errors=True)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "evals", "-q", "-p", "no:cacheprovider", "--no-cache",
         "--tasks", "mmlu", "--limit", "2", "--model", "dummy:m", "--data-dir", str(_mmlu_mirror(tmp_path / "data")),
         "--output-path", str(out), "--threshold", "mmlu:acc>=0.2"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    page = out / "report.html"
    assert_self_contained(page.read_text())
    browser = Browser(tmp_path / "profile")
    dom = browser.dom(page.as_uri())
    # each subject charted once, under its category; MMLU's own chart has the four categories
    chart = re.search(r'<svg[^>]*aria-label="mmlu: acc,none per subtask".*?</svg>', dom, re.S)
    assert chart and chart.group(0).count('class="bar"') == 4
    categories = ("mmlu_stem", "mmlu_humanities", "mmlu_social_sciences", "mmlu_other")
    charts = [re.search(rf'<svg[^>]*aria-label="{g}: acc,none per subtask".*?</svg>', dom, re.S) for g in categories]
    assert all(charts) and sum(c.group(0).count('class="bar"') for c in charts) == 57
    assert "abstract_algebra" in dom and "world_religions" in dom
    assert "all 1 gates passed" in dom

    browser.screenshot(page.as_uri(), out / "report.png", height=4000, min_bytes=50_000)  # tables and charts


def _arc_mmlu_mirror(folder: Path) -> Path:
    """The shared mirror where it has ARC-Easy and MMLU anatomy; else made-up rows in the hub
    data sets' columns (allenai/ai2_arc, cais/mmlu), enough for the report's structure."""
    shared = shared_mirror()
    needed = ("cais/mmlu/anatomy", "allenai/ai2_arc/ARC-Easy")
    if shared is not None and all((shared / n).is_dir() for n in needed):
        return shared
    labels = ["A", "B", "C", "D"]
    for split in ("test", "train"):
        path = folder / "allenai" / "ai2_arc" / "ARC-Easy" / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [
            {"id": f"q{i}", "question": f"Which of these is it is not {i}?", "answerKey": labels[i % 4],
             "choices": {"text": ["Water", "the Sun", "a rock", "Plants"], "label": labels}}
            for i in range(10)
        ]  # fmt: skip
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for split in ("test", "dev"):
        path = folder / "cais" / "mmlu" / "anatomy" / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [
            {"question": f"Which bone is {i}?", "subject": "anatomy", "choices": ["Femur", "Tibia", "Skull", "Rib"],
             "answer": i % 4}
            for i in range(10)
        ]  # fmt: skip
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@needs_chromium
def test_perturbed_run_report_renders_in_chromium(tmp_path: Path, tiny_model: Path) -> None:
    """The issue's check (`--tasks arc_easy,mmlu_anatomy --perturb typos,lowercase`) on the tiny
    random model: robustness, reliability and latency in report.html, and its screenshot."""
    out = ROOT / "reports" / "ci-artifacts" / "perturb-report"  # kept: CI keeps it as an artifact
    shutil.rmtree(out, ignore_errors=True)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "evals", "-q", "-p", "no:cacheprovider", "--no-cache",
         "--tasks", "arc_easy,mmlu_anatomy", "--perturb", "typos,lowercase", "--limit", "8",
         "--model", f"hf:{tiny_model}", "--device", "cpu", "--data-dir", str(_arc_mmlu_mirror(tmp_path / "data")),
         "--output-path", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "48 passed" in run.stdout  # (8 + 8 documents) x (as is, typos, lowercase)
    doc = json.loads((out / "results.json").read_text())
    page = (out / "report.html").read_text()
    assert_self_contained(page)
    # robustness: per task the metric as is, under each perturbation and the worst case, then its flipped documents
    for task in ("arc_easy", "mmlu_anatomy"):
        entry, robust = doc["results"][task], doc["robustness"][task]
        assert robust["perturbations"] == ["typos", "lowercase"] and robust["metric"] == "acc,none"
        table = re.search(rf"<h3>{task}: acc \(8 documents\)</h3>\s*<table.*?</table>\s*<ul>.*?</ul>", page, re.S)
        assert table, f"no robustness table for {task}"
        assert re.findall(r"<th>(.*?)</th>", table.group(0)) == ["as is", "typos", "lowercase", "worst case"]
        keys = ["acc,none", "acc@typos,none", "acc@lowercase,none", "acc@robust,none"]
        assert re.findall(r'<td class="num">(.*?)</td>', table.group(0)) == [f"{entry[k]:.4f}" for k in keys]
        assert entry["acc@robust,none"] <= min(entry["acc,none"], entry["acc@typos,none"], entry["acc@lowercase,none"])
        for name in ("typos", "lowercase"):
            flips = robust["flipped"][name]
            line = f"<li>{name}: {len(flips['to_wrong'])} right to wrong"
            assert line in table.group(0)
            assert all(doc_id in table.group(0) for doc_id in flips["to_wrong"] + flips["to_right"])
        # the reliability diagram, its whole title drawn
        ece = entry["ece_10_bin,none"]
        chart = re.search(rf'<svg[^>]*width="(\d+)"[^>]*aria-label="{task}: reliability \(ECE-10 {ece:.4f}\)"', page)
        assert chart and int(chart.group(1)) >= 7.5 * len(f"{task}: reliability (ECE-10 {ece:.4f})")
        # latency: the time per request, and time to first token said not to apply to log-likelihoods
        assert f'aria-label="{task}: time per request"' in page
        row = re.search(rf"<tr><td>{task}</td>.*?</tr>", page, re.S).group(0)
        assert '<td class="note" colspan="2">n/a (no generation)</td>' in row
        assert doc["efficiency"][task]["computed_requests"] == doc["efficiency"][task]["requests"] > 0
    assert "<th>Median s to first token</th>" in page and "the time to first token is a latency, not a share" in page

    browser = Browser(tmp_path / "profile")
    dom = browser.dom((out / "report.html").as_uri())
    assert 'id="robustness"' in dom and 'id="calibration"' in dom and 'id="efficiency"' in dom
    browser.screenshot((out / "report.html").as_uri(), out / "report.png", height=3200, min_bytes=50_000)
