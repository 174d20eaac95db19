"""Calibration of multiple-choice answers, as HELM measures it (Liang et al., 2022, sec. 4.4).

A document's confidence is the probability the model gives the choice it picks (the one with
the highest log-likelihood, as `acc` picks it), with the choices' log-likelihoods turned into
a distribution by a softmax; its correctness is its `acc`. The per-document record carries
both; the task (and each group, over all its tasks' documents pooled) gets three aggregates:

- `ece_10_bin`: expected calibration error with 10 equal-mass bins. Sort the confidences, cut
  them into runs of ceil(n / 10) documents, put each bin edge halfway between the last
  confidence of one run and the first of the next (plus 1.0; equal edges merge), assign every
  document to the first edge at or above its confidence, then sum over bins of
  (bin size / n) * |mean confidence - accuracy|. Lower is better; with fewer than 10
  documents there are as many bins as documents.
- `selective_acc@10`: order the documents by confidence, most confident first (ties in
  document order); the accuracy of the first int(0.1 * n) + 1 of them.
- `selective_cov_acc_area`: the area under the coverage-accuracy curve, i.e. the mean over
  k = 1..n of the accuracy of the k most confident documents.

These are HELM's `ece_10_bin`, `selective_acc@10` and `selective_cov_acc_area` (HELM computes
them with the `uncertainty-calibration` package's get_ece_em and get_selective_stats, whose
definitions these follow). They have no standard error: the table shows N/A.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ECE = "ece_10_bin"
SELECTIVE_ACC = "selective_acc@10"
SELECTIVE_AREA = "selective_cov_acc_area"
METRICS = (ECE, SELECTIVE_ACC, SELECTIVE_AREA)
HIGHER_IS_BETTER = {ECE: False, SELECTIVE_ACC: True, SELECTIVE_AREA: True}
NUM_BINS = 10
CONFIDENCE = "confidence"  # the per-document record's key
DECIMALS = 6


def softmax_confidence(lls: Sequence[float]) -> float:
    """The softmax probability of the most likely choice (the one `acc` picks)."""
    top = max(lls)
    total = sum(math.exp(ll - top) for ll in lls)
    return 1.0 / total


@dataclass(frozen=True)
class Bin:
    """One bin of the reliability diagram."""

    count: int
    confidence: float  # mean confidence of its documents
    accuracy: float  # share of its documents answered right
    low: float  # lowest and highest confidence in it
    high: float


def equal_mass_edges(confidences: Sequence[float], num_bins: int = NUM_BINS) -> list[float]:
    """Upper bin edges (the last is 1.0) that give each bin about as many documents."""
    ordered = sorted(confidences)
    parts = min(num_bins, len(ordered))
    size = math.ceil(len(ordered) / parts)
    runs = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    edges = {(a[-1] + b[0]) / 2.0 for a, b in zip(runs, runs[1:], strict=False)}
    return sorted(edges | {1.0})


def _bin_index(edges: list[float], value: float) -> int:
    """The first edge at or above `value` (numpy's searchsorted, side left)."""
    for i, edge in enumerate(edges):
        if value <= edge:
            return i
    return len(edges) - 1  # above 1.0 only by rounding


def reliability(confidences: Sequence[float], correct: Sequence[float], num_bins: int = NUM_BINS) -> list[Bin]:
    """The equal-mass bins, low confidence first (empty bins left out)."""
    if not confidences:
        return []
    edges = equal_mass_edges(confidences, num_bins)
    members: list[list[int]] = [[] for _ in edges]
    for i, value in enumerate(confidences):
        members[_bin_index(edges, value)].append(i)
    out = []
    for idx in members:
        if idx:
            confs = [confidences[i] for i in idx]
            out.append(
                Bin(
                    len(idx),
                    sum(confs) / len(idx),
                    sum(float(correct[i]) for i in idx) / len(idx),
                    min(confs),
                    max(confs),
                )
            )
    return out


def ece(confidences: Sequence[float], correct: Sequence[float], num_bins: int = NUM_BINS) -> float:
    """Expected calibration error over equal-mass bins."""
    n = len(confidences)
    return sum(b.count / n * abs(b.confidence - b.accuracy) for b in reliability(confidences, correct, num_bins))


def _cumulative_accuracy(confidences: Sequence[float], correct: Sequence[float]) -> list[float]:
    order = sorted(range(len(confidences)), key=lambda i: -confidences[i])  # stable: ties in document order
    accs, right = [], 0.0
    for k, i in enumerate(order, 1):
        right += float(correct[i])
        accs.append(right / k)
    return accs


def selective_accuracy(confidences: Sequence[float], correct: Sequence[float]) -> float:
    """Accuracy of the int(0.1 n) + 1 most confident documents."""
    accs = _cumulative_accuracy(confidences, correct)
    return accs[int(0.1 * len(accs))]


def coverage_accuracy_area(confidences: Sequence[float], correct: Sequence[float]) -> float:
    """Mean, over coverages k/n, of the accuracy of the k most confident documents."""
    accs = _cumulative_accuracy(confidences, correct)
    return sum(accs) / len(accs)


def _correct_key(metrics: dict[str, Any]) -> str | None:
    """The `acc,<filter>` key the confidence belongs to (the default filter's first)."""
    keys = [k for k in metrics if k.partition(",")[0] == "acc"]
    return "acc,none" if "acc,none" in keys else (keys[0] if keys else None)


def pairs(records: Sequence[dict[str, Any]]) -> tuple[str | None, list[float], list[float]]:
    """(the filter, confidences, correctness) of the records that carry a confidence."""
    filter_name, confs, right = None, [], []
    for rec in records:
        key = _correct_key(rec.get("metrics", {}))
        if rec.get(CONFIDENCE) is None or key is None:
            continue
        filter_name = filter_name or key.partition(",")[2] or "none"
        confs.append(float(rec[CONFIDENCE]))
        right.append(float(rec["metrics"][key]))
    return filter_name, confs, right


def aggregates(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """`metric,filter` -> value for the three calibration aggregates; empty when no record
    has a confidence (not a multiple-choice task)."""
    filter_name, confs, right = pairs(records)
    if not confs:
        return {}
    return {
        f"{ECE},{filter_name}": ece(confs, right),
        f"{SELECTIVE_ACC},{filter_name}": selective_accuracy(confs, right),
        f"{SELECTIVE_AREA},{filter_name}": coverage_accuracy_area(confs, right),
    }


def doc_confidence(task: Any, work: Any, responses: Sequence[Any]) -> float | None:
    """A scored document's confidence, for the output types that have one (multiple choice
    scored by the built-in metrics: a process_results helper defines its own answer)."""
    confidence = getattr(task.output, "confidence", None)
    if confidence is None or task.config.process_results is not None:
        return None
    # to 6 decimals: beyond them a confidence is float noise (a log-likelihood's last digits vary
    # with the batch it ran in)
    return round(confidence(work, responses), DECIMALS)
