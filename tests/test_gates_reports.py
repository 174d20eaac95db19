"""Gates and reports as a CI user sees them: exit codes, terminal lines, JUnit test cases,
results.json, flipped documents, report.html in a real browser."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from scipy import stats

N_DOCS = 40

TASK_YAML = """\
task: golden
dataset_path: local/golden
output_type: multiple_choice
test_split: test
doc_to_text: "Q: {{q}}\\nA:"
doc_to_choice: "{{choices}}"
doc_to_target: label
metric_list:
  - metric: acc
  - metric: acc_norm
"""


def _rows(shift: int) -> list[dict]:
    """The dummy model always picks the shortest choice; `shift` moves which one that is, so two
    data versions give a known set of documents whose correctness flips."""
    rows = []
    for i in range(N_DOCS):
        short = (i + (shift if i % 3 == 0 else 0)) % 4
        choices = ["x" * (2 + k) for k in range(4)]
        choices[short] = "y"
        rows.append({"q": f"question {i}", "choices": choices, "label": (i // 2) % 4})
    return rows


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    (pytester.path / "evals" / "golden").mkdir(parents=True)
    (pytester.path / "evals" / "golden" / "golden.yaml").write_text(TASK_YAML)
    (pytester.path / "evals" / "golden" / "test_golden.py").write_text(
        "def test_golden(lmeval_doc):\n    lmeval_doc.check()\n"
    )
    pytester.makeini("[pytest]\nlmeval_evals_dir = evals\n")
    return pytester


def _data(project: pytest.Pytester, name: str, shift: int) -> str:
    folder = project.path / name / "local" / "golden" / "default"
    folder.mkdir(parents=True)
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(shift)))
    return str(project.path / name)


def _run(project: pytest.Pytester, data: str, out: str, *extra: str) -> pytest.RunResult:
    return project.runpytest_subprocess(
        "evals", "--model", "dummy:m", "--data-dir", data, "--output-path", out, "--no-cache", *extra
    )


def _has(res: pytest.RunResult, *lines: str) -> None:
    """Each text appears in the output (plain substrings: gate names hold brackets)."""
    out = res.stdout.str()
    for line in lines:
        assert line in out, f"{line!r} not in output:\n{out[-3000:]}"


def _acc(rows: list[dict]) -> list[float]:
    return [1.0 if min(range(4), key=lambda k: len(r["choices"][k])) == r["label"] else 0.0 for r in rows]


def test_passing_and_failing_threshold(project: pytest.Pytester) -> None:
    data = _data(project, "data", 0)
    acc = sum(_acc(_rows(0))) / N_DOCS
    ok = _run(project, data, "ok", "--threshold", f"golden:acc>={acc - 0.01:.2f}")
    assert ok.ret == 0
    _has(ok, f"PASS gate[golden:acc>={acc - 0.01:.2f}]: golden:acc = {acc:.4f}, required >= {acc - 0.01:.4f}")

    bad = _run(project, data, "bad", "--threshold", "golden:acc>=0.99", "--junitxml", "junit.xml")
    assert bad.ret == 1
    _has(
        bad,
        f"FAIL gate[golden:acc>=0.99]: golden:acc = {acc:.4f}, required >= 0.9900",
        "FAILED lmeval-gates::gate[golden:acc>=0.99]",
        f"1 failed, {N_DOCS} passed",
    )
    cases = ET.parse(project.path / "junit.xml").getroot().iter("testcase")
    gate = next(c for c in cases if c.get("name") == "gate[golden:acc>=0.99]")
    assert gate.find("failure") is not None
    assert "required >= 0.9900" in gate.find("failure").get("message")
    gates = json.loads((project.path / "bad" / "results.json").read_text())["gates"]
    assert gates == [
        {
            "name": "gate[golden:acc>=0.99]", "passed": False, "task": "golden", "metric": "acc",
            "value": pytest.approx(acc), "min": 0.99, "max": None,
            "summary": f"golden:acc = {acc:.4f}, required >= 0.9900",
        }
    ]  # fmt: skip


def test_gates_file_and_bad_threshold(project: pytest.Pytester) -> None:
    data = _data(project, "data", 0)
    project.path.joinpath("gates.yaml").write_text(
        "gates:\n"
        "  - {task: golden, metric: acc, min: 0.0}\n"
        "  - {task: golden, metric: acc_norm, reference: 0.9, rel_tol: 0.05}\n"
    )
    res = _run(project, data, "out", "--gates", "gates.yaml")
    assert res.ret == 1
    _has(res, "PASS gate[golden:acc>=0]", "FAIL gate[golden:acc_norm>=0.9*(1-0.05)]")
    bad = _run(project, data, "out2", "--threshold", "golden:acc>0.5")
    assert bad.ret == 4
    bad.stderr.fnmatch_lines(["ERROR: --threshold 'golden:acc>0.5': expected TASK:METRIC>=VALUE*"])


def test_baseline_lists_exactly_the_flipped_documents_with_mcnemar(project: pytest.Pytester) -> None:
    before_rows, after_rows = _rows(0), _rows(1)
    base = _run(project, _data(project, "data0", 0), "base")
    assert base.ret == 0
    res = _run(project, _data(project, "data1", 1), "now", "--baseline", "base", "--max-drop", "1.0", "--alpha", "0.5")
    before, after = _acc(before_rows), _acc(after_rows)
    lost = [i for i in range(N_DOCS) if before[i] == 1.0 and after[i] == 0.0]
    gained = [i for i in range(N_DOCS) if before[i] == 0.0 and after[i] == 1.0]
    assert lost and gained
    expected_p = stats.binomtest(len(lost), len(lost) + len(gained), 0.5).pvalue
    gate = next(g for g in json.loads((project.path / "now" / "results.json").read_text())["gates"]
                if g["name"] == "baseline[golden:acc,none]")  # fmt: skip
    assert gate["flipped_to_wrong"] == [f"golden-{i}" for i in lost]
    assert gate["flipped_to_right"] == [f"golden-{i}" for i in gained]
    assert gate["p_value"] == pytest.approx(expected_p)
    assert gate["diff_points"] == pytest.approx((sum(after) - sum(before)) / N_DOCS * 100)
    drop = (sum(before) - sum(after)) / N_DOCS * 100
    assert gate["passed"] is not (drop > 1.0 and expected_p < 0.5)
    _has(res, f"golden-{lost[0]}: right before, wrong now")
    html = (project.path / "now" / "report.html").read_text()
    assert f'id="golden-{lost[0]}"' in html and "Q: question" in html


def test_item_outcome_correct_fails_wrong_documents(project: pytest.Pytester) -> None:
    data = _data(project, "data", 0)
    right = int(sum(_acc(_rows(0))))
    res = _run(project, data, "out", "--item-outcome", "correct")
    res.assert_outcomes(passed=right, failed=N_DOCS - right)
    res.stdout.fnmatch_lines(["*answered wrong (acc=0, acc_norm=*"])


def test_gates_hold_under_xdist(project: pytest.Pytester) -> None:
    data = _data(project, "data", 0)
    res = _run(project, data, "out", "-n", "2", "--threshold", "golden:acc>=0.99")
    assert res.ret == 1
    _has(res, "FAIL gate[golden:acc>=0.99]")
    assert json.loads((project.path / "out" / "results.json").read_text())["gates"][0]["passed"] is False


def test_compare_command(project: pytest.Pytester) -> None:
    for i in range(2):
        _run(project, _data(project, f"d{i}", i), f"run{i}")
    out = project.run("python", "-m", "pytest_lmeval.report", "compare", "run0", "run1", "-o", "cmp.html")
    assert out.ret == 0
    page = (project.path / "cmp.html").read_text()
    assert page.count("<svg") == 2 and "acc,none" in page and "run1" in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_in_a_browser(pytester: pytest.Pytester, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    data = root.parent / "shared" / "data"
    if not data.is_dir():
        pytest.skip("benchmark data mirror not found")
    out = root / "reports" / "ci-artifacts"
    shutil.rmtree(out, ignore_errors=True)
    run = subprocess.run(
        ["python", "-m", "pytest", str(root / "evals"), "-q", "-p", "no:cacheprovider", "--tasks", "mmlu",
         "--limit", "2", "--model", "dummy:m", "--data-dir", str(data), "--output-path", str(out), "--no-cache"],
        capture_output=True, text=True, cwd=root,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:]
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    page = (out / "report.html").as_uri()
    dom = subprocess.run(["chromium", *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert "mmlu (all 57 tasks)" in dom.stdout
    assert dom.stdout.count('class="bar"') >= 57 + 4 + 57
    shot = out / "report.png"
    subprocess.run(["chromium", *flags, "--window-size=1280,3000", f"--screenshot={shot}", page],
                   capture_output=True, timeout=120)  # fmt: skip
    assert shot.stat().st_size > 10_000
