"""report.html's document browser and the comparison page's flipped documents, in a real headless
browser (Debian's chromium; the tests skip only where it is missing): what the browser renders
after the page's script ran (the results, a filtered list, one opened document) is checked against
results.json and documents.jsonl, and each view is kept as a screenshot."""

from __future__ import annotations

import json
import re
import sys
from html import unescape
from pathlib import Path

import pytest
from golden_project import read_json, use_variant, write_project
from golden_project import run as golden_run
from headless import Browser, needs_chromium

# Imported once here: a baseline comparison imports scipy.stats inside pytester's in-process run,
# which drops it afterwards, and numpy's extension modules cannot be imported twice in one process.
pytest.importorskip("scipy.stats")

pytestmark = needs_chromium

A = [(True, False)] * 14 + [(False, True)] * 2 + [(True, True)] * 16 + [(False, False)] * 8
B = [(True, False)] * 3 + [(False, True)] * 1 + [(True, True)] * 10 + [(False, False)] * 6


def text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


def list_rows(dom: str) -> list[list[str]]:
    """The document list's rows as the browser rendered them: each cell's text."""
    body = re.search(r'<tbody id="docs-list">(.*?)</tbody>', dom, re.S).group(1)
    return [
        [text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr.*?</tr>", body, re.S)
    ]


def doc_view(dom: str) -> str:
    found = re.search(r'<div id="doc-view"[^>]*>(.*?)</div>\s*<table class="docs">', dom, re.S)
    assert found, "no opened document"
    return found.group(1)


def per_document(folder: Path) -> dict[str, dict]:
    lines = (folder / "documents.jsonl").read_text().splitlines()
    return {f"{r['task']}-{r['doc_id']}": r for r in map(json.loads, lines)}


def test_multiple_choice_run_browsed_against_its_baseline(pytester: pytest.Pytester, tmp_path: Path) -> None:
    write_project(pytester.path, A, B)
    assert golden_run(pytester, "--output-path", "ckpt1/run").ret == 0  # no --log-samples: the page has it all
    use_variant(pytester.path, "b")
    assert golden_run(pytester, "--output-path", "ckpt2/run", "--baseline", "ckpt1/run").ret == 1
    folder = pytester.path / "ckpt2" / "run"
    doc, docs = read_json(folder / "results.json"), per_document(folder)
    page = (folder / "report.html").as_uri()
    browser = Browser(tmp_path / "profile")

    # the results first: the scores as results.json has them, then the documents, then calibration
    dom = browser.dom(page)
    browser.screenshot(page, tmp_path / "results.png")
    assert dom.index('id="results"') < dom.index('id="documents"') < dom.index('id="calibration"')
    scores = dom[dom.index('id="results"') : dom.index('id="documents"')]
    assert f"{doc['results']['golden']['acc,none']:.4f}" in scores and "ece_10_bin" not in scores
    assert 'aria-label="acc,none per task and group"' in scores  # every task and group charted
    assert "ece_10_bin" in dom[dom.index('id="calibration"') :]
    assert "<title>lmeval report: dummy:m</title>" in dom
    # every document listed (60: one page), each right or wrong as documents.jsonl scored it
    rows = list_rows(dom)
    assert "60 of 60 documents" in dom and len(rows) == 60
    assert {r[0]: r[1].startswith("right") for r in rows} == {
        k: v["metrics"]["acc,none"] == 1.0 for k, v in docs.items()
    }

    # filtered: golden_a's documents that were right in the baseline and are wrong now
    gate = next(g for g in doc["gates"] if g["name"] == "baseline[golden:acc]")
    lost = [i for i in gate["flipped_to_wrong"] if i.startswith("golden_a-")]
    url = page + "#docs?task=golden_a&show=lost"
    dom = browser.dom(url)
    browser.screenshot(url, tmp_path / "filtered.png", height=8000)
    assert [r[0] for r in list_rows(dom)] == lost and f"{len(lost)} of 60 documents" in dom
    assert all(r[1] == "wrong (was right)" for r in list_rows(dom))
    dom = browser.dom(page + "#docs?q=question%2012")
    assert [r[0] for r in list_rows(dom)] == ["golden_a-12", "golden_b-12"]

    # one document opened by its address: choices with log-likelihoods, both runs' answers
    url = page + "#doc=golden_a/0"
    dom = browser.dom(url)
    browser.screenshot(url, tmp_path / "document.png")
    view = doc_view(dom)
    shown = text(view)
    assert "golden_a-0: wrong" in shown and "Q: question 0\nA:" in shown
    choices = re.findall(
        r'<tr( class="picked")?><td>([^<]*)</td><td class="num">([^<]*)</td><td>([^<]*)</td></tr>', view
    )
    # the dummy: log-likelihood = -len(" " + choice); it picks the shortest ("n"), the target is x0x
    assert [(c, float(ll), marks) for _, c, ll, marks in choices] == [
        ("x0x", -4.0, "target"), ("n", -2.0, "picked"), ("longest", -8.0, ""), ("x3x", -4.0, "")
    ]  # fmt: skip
    side = re.search(r'<table class="side-by-side">.*?</table>', view, re.S).group(0)
    assert [text(c) for c in re.findall(r"<td>(.*?)</td>", side)] == ["answer", "y", "n", "result", "right", "wrong"]
    assert 'pytest --model dummy:m --data-dir data -k "[golden_a-0]"' in shown
    assert f"acc,none = {docs['golden_a-0']['metrics']['acc,none']:g}" in shown
    assert f"{doc['results']['golden_a']['acc,none']:.4f}" in text(dom)


GEN_TASK = """\
task: arith
dataset_path: local/arith
output_type: generate_until
test_split: test
fewshot_split: train
num_fewshot: 2
fewshot_config:
  sampler: first_n
doc_to_text: "Q: {{question}}\\n{{reply}}"
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["\\n\\n", "STOP"]
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
filter_list:
  - name: strict-match
    filter:
      - function: regex
        regex_pattern: "#### (\\\\-?[0-9\\\\.\\\\,]+)"
      - function: take_first
"""
# The dummy generates the prompt's last line (`reply`), cut at the stop sequences.
ROWS = [
    {"question": "2+2", "reply": "#### 4", "answer": "4"},
    {"question": "10*10", "reply": "It is 100.STOP ignored", "answer": "100"},
    {"question": "1000+234", "reply": "#### 1,234 </script><b>", "answer": "1,234"},
    {"question": "7-8", "reply": "no idea", "answer": "-1"},
] + [{"question": f"{n}+0", "reply": f"#### {n}" if n % 3 else "?", "answer": str(n)} for n in range(100, 226)]
TRAIN = [{"question": "1+1", "reply": "#### 2", "answer": "2"}, {"question": "3+3", "reply": "#### 6", "answer": "6"}]


def test_generation_run_browsed_with_its_perturbed_variants(pytester: pytest.Pytester, tmp_path: Path) -> None:
    folder = pytester.path / "evals" / "arith"
    folder.mkdir(parents=True)
    (folder / "arith.yaml").write_text(GEN_TASK)
    (folder / "test_arith.py").write_text(
        "import pytest_lmeval as lm\n\n\n@lm.benchmark('arith')\ndef test_arith(doc):\n    doc.score()\n"
    )
    data = pytester.path / "data" / "local" / "arith" / "default"
    data.mkdir(parents=True)
    for split, rows in (("test", ROWS), ("train", TRAIN)):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (pytester.path / "pytest.ini").write_text("[pytest]\nlmeval_evals_dir = evals\n")
    res = golden_run(pytester, "--output-path", "out", "--perturb", "lowercase")
    assert res.ret == 0, res.stdout.str()[-3000:]
    out = pytester.path / "out"
    doc, docs = read_json(out / "results.json"), per_document(out)
    raw = (out / "report.html").read_text()
    assert "</script><b>" not in raw  # document text cannot end the data's script element
    page = (out / "report.html").as_uri()
    browser = Browser(tmp_path / "profile")

    dom = browser.dom(page)
    browser.screenshot(page, tmp_path / "results.png")
    assert f"{doc['results']['arith']['exact_match,strict-match']:.4f}" in dom[: dom.index('id="documents"')]
    # 130 documents, rendered a page (100) at a time
    assert len(list_rows(dom)) == 100 and "Show 30 more (30 not shown)" in dom
    # the right ones, counted by the browser, are results.json's exact match
    dom = browser.dom(page + "#docs?show=right")
    right = int(re.search(r"(\d+) of 130 documents", dom).group(1))
    assert right / 130 == pytest.approx(doc["results"]["arith"]["exact_match,strict-match"])
    assert right == sum(d["metrics"]["exact_match,strict-match"] for d in docs.values())
    url = page + "#docs?task=arith&q=1%2C234"
    dom = browser.dom(url)
    browser.screenshot(url, tmp_path / "filtered.png", height=8000)
    assert [r[0] for r in list_rows(dom)] == ["arith-2"]
    assert list_rows(dom)[0][2:4] == ["1,234", "1,234"]  # the answer the filter extracted, and the target

    url = page + "#doc=arith/1"
    dom = browser.dom(url)
    browser.screenshot(url, tmp_path / "document.png")
    view = doc_view(dom)
    shown = text(view)
    assert "arith-1: wrong" in shown
    # the few-shot examples folded, the document's own prompt in the open
    fewshot = re.search(
        r'<details class="fewshot"><summary>few-shot context \((\d+) characters\)</summary><pre>(.*?)</pre>', view, re.S
    )
    assert fewshot and unescape(fewshot.group(2)) == "Q: 1+1\n#### 2 2\n\nQ: 3+3\n#### 6 6\n\n"
    assert int(fewshot.group(1)) == len(unescape(fewshot.group(2)))
    assert '<pre class="own">Q: 10*10\nIt is 100.STOP ignored</pre>' in view
    assert '<pre class="generated">It is 100.</pre>' in view  # cut at STOP, as generated
    assert re.search(r"<td>strict-match</td><td><code>\[invalid\]</code></td>", view)
    assert docs["arith-1"]["metrics"]["exact_match,strict-match"] == 0
    # its perturbed variant, and the command that reruns both
    variant = re.search(r'<table class="variants">.*?</table>', view, re.S).group(0)
    cells = [text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", variant, re.S)]
    assert cells[0] == "lowercase" and cells[1] == "[invalid]" and cells[2] == "wrong"
    assert (
        'pytest --model dummy:m --data-dir data --perturb lowercase -k "[arith-1] or [arith-1[lowercase]]"' in cells[4]
    )
    assert "it is 100.stop ignored" in cells[3]


def test_compare_page_shows_flipped_documents_side_by_side(pytester: pytest.Pytester, tmp_path: Path) -> None:
    write_project(pytester.path, A, B)
    assert golden_run(pytester, "--output-path", "ckpt1/run").ret == 0
    use_variant(pytester.path, "b")
    assert golden_run(pytester, "--output-path", "ckpt2/run").ret == 0
    out = pytester.run(
        sys.executable, "-m", "pytest_lmeval.report", "compare", "ckpt1/run", "ckpt2/run", "-o", "c.html"
    )
    assert out.ret == 0
    first, second = per_document(pytester.path / "ckpt1" / "run"), per_document(pytester.path / "ckpt2" / "run")
    flipped = sorted(k for k in first if first[k]["metrics"]["acc,none"] != second[k]["metrics"]["acc,none"])
    url = (pytester.path / "c.html").as_uri() + "#doc=golden_a/0"
    browser = Browser(tmp_path / "profile")
    dom = browser.dom(url)
    browser.screenshot(url, tmp_path / "compare.png", height=8000)
    section = dom[dom.index('id="flipped"') :]
    assert sorted(re.findall(r'<details class="flip" id="doc=(\w+)/(\d+)"', section)) == sorted(
        tuple(k.split("-")) for k in flipped
    )
    opened = re.search(r'<details class="flip" id="doc=golden_a/0" open="">.*?</details>', section, re.S)
    assert opened, "the document in the address is not opened"
    cells = [text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", opened.group(0), re.S)]
    assert cells[:3] == ["answer", "y", "n"] and cells[3:6] == ["result", "right", "wrong"]
    assert "Q: question 0\nA:" in text(opened.group(0))
