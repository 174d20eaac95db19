"""Calibration (HELM's ECE-10 with equal-mass bins, selective accuracy, coverage-accuracy area)
against hand computations on fixed confidences, and as a user reads it after a run: the
terminal table, results.json, samples and report.html's reliability diagram."""

from __future__ import annotations

import math
import re

import pytest
from quiz_project import read_json, read_jsonl, run, table_rows, write_quiz

from pytest_lmeval.scoring import calibration as cal

# 20 documents, listed out of order; sorted, they fall into 10 bins of two (confidence, right):
# (0.30 0, 0.34 1) (0.40 0, 0.44 0) (0.50 1, 0.52 0) (0.55 1, 0.57 1) (0.60 0, 0.62 1)
# (0.70 1, 0.72 1) (0.75 0, 0.77 1) (0.80 1, 0.84 1) (0.90 1, 0.92 0) (0.95 1, 0.99 1)
DOCS = [
    (0.90, 1), (0.30, 0), (0.57, 1), (0.99, 1), (0.44, 0), (0.62, 1), (0.75, 0), (0.50, 1), (0.84, 1), (0.34, 1),
    (0.70, 1), (0.92, 0), (0.40, 0), (0.55, 1), (0.77, 1), (0.60, 0), (0.95, 1), (0.52, 0), (0.72, 1), (0.80, 1),
]  # fmt: skip
CONF = [c for c, _ in DOCS]
RIGHT = [y for _, y in DOCS]


def test_ece_of_ten_equal_mass_bins_by_hand() -> None:
    # |mean confidence - accuracy| per bin, each bin 2/20 of the documents
    gaps = [0.32 - 0.5, 0.42 - 0, 0.51 - 0.5, 0.56 - 1, 0.61 - 0.5]
    gaps += [0.71 - 1, 0.76 - 0.5, 0.82 - 1, 0.91 - 0.5, 0.97 - 1]
    assert cal.ece(CONF, RIGHT) == pytest.approx(sum(abs(g) for g in gaps) / 10)
    assert cal.ece(CONF, RIGHT) == pytest.approx(0.233)
    bins = cal.reliability(CONF, RIGHT)
    assert [b.count for b in bins] == [2] * 10
    assert [round(b.confidence, 2) for b in bins] == [0.32, 0.42, 0.51, 0.56, 0.61, 0.71, 0.76, 0.82, 0.91, 0.97]
    assert [b.accuracy for b in bins] == [0.5, 0, 0.5, 1, 0.5, 1, 0.5, 1, 0.5, 1]


def test_selective_accuracy_and_coverage_area_by_hand() -> None:
    # most confident first: 0.99 1, 0.95 1, 0.92 0, 0.90 1, 0.84 1, 0.80 1, 0.77 1, 0.75 0, 0.72 1, 0.70 1,
    # 0.62 1, 0.60 0, 0.57 1, 0.55 1, 0.52 0, 0.50 1, 0.44 0, 0.40 0, 0.34 1, 0.30 0
    right_so_far = [1, 2, 2, 3, 4, 5, 6, 6, 7, 8, 9, 9, 10, 11, 11, 12, 12, 12, 13, 13]
    # HELM's selective_acc@10: the int(0.1 * 20) + 1 = 3 most confident
    assert cal.selective_accuracy(CONF, RIGHT) == pytest.approx(2 / 3)
    area = sum(r / k for k, r in enumerate(right_so_far, 1)) / 20
    assert cal.coverage_accuracy_area(CONF, RIGHT) == pytest.approx(area)


def test_equal_confidences_share_a_bin_as_helm_bins_them() -> None:
    # 2 bins of 4 sorted values: runs (0.3, 0.5) and (0.5, 0.9); the edge between them is 0.5,
    # and a confidence equal to an edge falls below it: bins {0.3, 0.5, 0.5} and {0.9}
    conf, right = [0.5, 0.9, 0.3, 0.5], [1, 1, 0, 0]
    assert cal.equal_mass_edges(conf, 2) == [0.5, 1.0]
    assert [b.count for b in cal.reliability(conf, right, 2)] == [3, 1]
    assert cal.ece(conf, right, 2) == pytest.approx(3 / 4 * abs(1.3 / 3 - 1 / 3) + 1 / 4 * abs(0.9 - 1))
    # fewer documents than bins: one bin per document
    assert cal.ece([0.8, 0.6], [1, 0]) == pytest.approx((0.2 + 0.6) / 2)


def test_confidence_is_the_softmax_probability_of_the_chosen_choice() -> None:
    assert cal.softmax_confidence([-1.0, -2.0, -3.0]) == pytest.approx(1 / (1 + math.exp(-1) + math.exp(-2)))
    assert cal.softmax_confidence([-1000.0, -1000.0]) == pytest.approx(0.5)  # no underflow


# The quiz project under dummy:d (log-likelihood = -(1 + len(choice))): quiz_a's choice
# log-likelihoods relative to the chosen one, and whether the pick is right.
A = 1 / (1 + math.exp(-1) + math.exp(-3))  # documents 0 (no/yes/maybe) and 1 (cat/horse/ox): right
B = 1 / (1 + math.exp(-1) + math.exp(-2))  # document 3 (red/green/blue): wrong; document 4 (a/bb/ccc): right
C = 1 / (1 + math.exp(-3) + math.exp(-4))  # document 2 (alpha/be/gamma!): wrong
QUIZ_A = [(A, 1), (A, 1), (C, 0), (B, 0), (B, 1)]
D = 1 / (1 + math.exp(-1))  # quiz_b documents 0 (sun/moon) and 2 (left/right): wrong
E = 1 / (1 + math.exp(-2))  # quiz_b document 1 (up/down): right
QUIZ_B = [(D, 0), (E, 1), (D, 0)]


def test_a_run_reports_calibration_per_task_and_group(pytester: pytest.Pytester) -> None:
    write_quiz(pytester.path)
    res = run(pytester, "evals", "--model", "dummy:d", "--data-dir", "data", "--output-path", "out", "--log-samples")
    assert res.ret == 0
    doc = read_json(pytester.path / "out" / "results.json")
    a = doc["results"]["quiz_a"]
    # five documents, five bins: {B, B} (one right), {A, A} (both right), {C} (wrong)
    assert a["ece_10_bin,none"] == pytest.approx(2 / 5 * abs(B - 0.5) + 2 / 5 * abs(A - 1) + 1 / 5 * C)
    assert a["selective_acc@10,none"] == 0.0  # the most confident document, C, is wrong
    assert a["selective_cov_acc_area,none"] == pytest.approx((0 + 1 / 2 + 2 / 3 + 2 / 4 + 3 / 5) / 5)
    assert a["ece_10_bin_stderr,none"] == "N/A"
    assert doc["higher_is_better"]["quiz_a"]["ece_10_bin"] is False
    assert doc["higher_is_better"]["quiz"]["selective_acc@10"] is True
    # the group pools its tasks' documents
    pooled = QUIZ_A + QUIZ_B
    conf, right = [c for c, _ in pooled], [y for _, y in pooled]
    group = doc["groups"]["quiz"]
    assert group["ece_10_bin,none"] == pytest.approx(cal.ece(conf, right))
    assert group["selective_acc@10,none"] == 0.0  # int(0.8) + 1 = 1 document: the most confident, C, is wrong
    assert doc["results"]["quiz_b"]["ece_10_bin,none"] == pytest.approx(2 / 3 * D + 1 / 3 * (1 - E))
    # samples carry each document's confidence
    samples = read_jsonl(pytester.path / "out" / "samples" / "quiz_a.jsonl")
    assert [s["confidence"] for s in samples] == pytest.approx([c for c, _ in QUIZ_A], abs=1e-6)
    # the terminal: the table holds the tasks' own metrics, calibration its own lines after it
    assert not [r for r in table_rows(res) if r[4] in cal.METRICS]
    res.stdout.fnmatch_lines(
        [
            "lmeval calibration (ece_10_bin ↓, selective_acc@10 ↑, selective_cov_acc_area ↑):",
            f"  - quiz_a  {a['ece_10_bin,none']:.4f}, {a['selective_acc@10,none']:.4f}, *",
        ]
    )
    # report.html: a reliability diagram per task, one dot per non-empty bin
    page = (pytester.path / "out" / "report.html").read_text()
    chart = re.search(r'<svg[^>]*aria-label="quiz_a: reliability \(ECE-10 0\.\d{4}\)".*?</svg>', page, re.S)
    assert chart, page[-3000:]
    assert chart.group(0).count('<circle class="bin"') == 3


def test_generation_tasks_have_no_calibration(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_gen="""
        import pytest_lmeval as lm
        echo = lm.generate("echo", data=lm.rows([{"w": "x", "t": "x"}]), prompt="{w}", target="{t}",
                           until=["\\n"], metrics=["exact_match"])

        @lm.benchmark(echo)
        def test_echo(doc):
            doc.score()
        """
    )
    res = run(pytester, "--model", "dummy:d", "--output-path", "out")
    assert res.ret == 0, res.stdout.str()
    assert not [k for k in read_json(pytester.path / "out" / "results.json")["results"]["echo"] if "ece" in k]
