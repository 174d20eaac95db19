"""Per-document metrics and their aggregation, as lm-evaluation-harness computes them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

NA = "N/A"


def gold_index(target: Any, choices: Sequence[str]) -> int:
    """lm-eval's rule: an int indexes the choices, a string is looked up; -100 if neither fits."""
    if isinstance(target, int):
        return target if target < len(choices) else -100
    if isinstance(target, str):
        return choices.index(target) if target in choices else -100
    raise TypeError(f"target must be an index or a choice, got {target!r}")


def score_multiple_choice(
    lls: Sequence[float], choices: Sequence[str], target: Any, metrics: Sequence[str]
) -> dict[str, float]:
    gold = gold_index(target, choices)
    if gold == -100:
        raise ValueError(f"target {target!r} is not one of the {len(choices)} choices")
    arr = np.asarray(lls, dtype=np.float64)
    lengths = np.array([float(len(c)) for c in choices])
    out = {
        "acc": 1.0 if int(np.argmax(arr)) == gold else 0.0,
        "acc_norm": 1.0 if int(np.argmax(arr / lengths)) == gold else 0.0,
    }
    return {m: out[m] for m in metrics}


def score_loglikelihood(ll: float, is_greedy: bool, metrics: Sequence[str]) -> dict[str, float]:
    out = {"acc": float(int(is_greedy)), "perplexity": ll}
    return {m: out[m] for m in metrics}


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def mean_stderr(values: Sequence[float]) -> float | str:
    """Sample standard deviation over sqrt(n); 'N/A' for one value, as lm-eval reports it."""
    n = len(values)
    if n < 2:
        return NA
    mu = mean(values)
    return math.sqrt(sum((x - mu) ** 2 for x in values) / (n - 1)) / math.sqrt(n)


def perplexity(values: Sequence[float]) -> float:
    return math.exp(-mean(values))


AGGREGATIONS = {"mean": mean, "perplexity": perplexity}


def aggregate(metric: str, values: Sequence[float]) -> tuple[float, float | str]:
    """A task-level value and its standard error."""
    if metric == "perplexity":
        # lm-eval bootstraps this stderr; we leave it out rather than report a different one.
        return perplexity(values), NA
    return mean(values), mean_stderr(values)


def weighted_mean(values: Sequence[float], sizes: Sequence[int], by_size: bool = True) -> float:
    weights = sizes if by_size else [1] * len(sizes)
    return sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights)


def pooled_stderr(stderrs: Sequence[float], sizes: Sequence[int]) -> float:
    """lm-eval's pooled sample stderr for a group weighted by subtask size."""
    var = sum((n - 1) * se**2 * n for n, se in zip(sizes, stderrs, strict=True)) / (sum(sizes) - len(sizes))
    return math.sqrt(var / sum(sizes))


def unweighted_stderr(stderrs: Sequence[float]) -> float:
    return math.sqrt(sum(se**2 for se in stderrs)) / len(stderrs)
