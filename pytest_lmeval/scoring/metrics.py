"""Per-document metrics and their aggregation, as lm-evaluation-harness computes them.

A document's value is a number, or for the rolling perplexities a (log-likelihood, words or
bytes) pair that the task-level aggregation weights (`weighted_perplexity`, `bits_per_byte`).
Names, default aggregations and directions are lm-eval's registry's.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from typing import Any

import numpy as np

NA = "N/A"

# metric -> (default aggregation, higher is better), from lm-eval's metric registry.
METRICS: dict[str, tuple[str, bool]] = {
    "acc": ("mean", True),
    "acc_norm": ("mean", True),
    "acc_bytes": ("mean", True),
    "acc_mutual_info": ("mean", True),
    "exact_match": ("mean", True),
    "perplexity": ("perplexity", False),
    "likelihood": ("mean", True),
    "word_perplexity": ("weighted_perplexity", False),
    "byte_perplexity": ("weighted_perplexity", False),
    "bits_per_byte": ("bits_per_byte", False),
    "pass_rate": ("mean", True),  # the share of documents whose benchmark body passed
}


def gold_index(target: Any, choices: Sequence[str]) -> int:
    """lm-eval's rule: an int indexes the choices, a string is looked up; -100 if neither fits."""
    if isinstance(target, int):
        return target if target < len(choices) else -100
    if isinstance(target, str):
        return choices.index(target) if target in choices else -100
    raise TypeError(f"target must be an index or a choice, got {target!r}")


def score_multiple_choice(
    lls: Sequence[float],
    choices: Sequence[str],
    target: Any,
    metrics: Sequence[str],
    *,
    greedy: Sequence[bool] | None = None,
    unconditional: Sequence[float] | None = None,
) -> dict[str, float]:
    """acc, acc_norm (by characters), acc_bytes, exact_match (the gold choice is the greedy
    continuation) and acc_mutual_info (needs the choices' unconditional log-likelihoods). A list
    target (several right answers) scores 1 when the prediction is any of them."""
    golds = [gold_index(t, choices) for t in target] if isinstance(target, list) else [gold_index(target, choices)]
    if -100 in golds:
        raise ValueError(f"target {target!r} is not one of the {len(choices)} choices")
    arr = np.asarray(lls, dtype=np.float64)
    chars = np.array([float(len(c)) for c in choices])
    nbytes = np.array([float(len(c.encode("utf-8"))) for c in choices])
    out: dict[str, float] = {
        "acc": 1.0 if int(np.argmax(arr)) in golds else 0.0,
        "acc_norm": 1.0 if int(np.argmax(arr / chars)) in golds else 0.0,
        "acc_bytes": 1.0 if int(np.argmax(arr / nbytes)) in golds else 0.0,
    }
    if greedy is not None:
        out["exact_match"] = float(int(any(greedy[g] for g in golds)))
    if unconditional is not None:
        mutual = [c - u for c, u in zip(lls, unconditional, strict=True)]
        out["acc_mutual_info"] = 1.0 if int(np.argmax(mutual)) in golds else 0.0
    return {m: out[m] for m in metrics}


def score_loglikelihood(ll: float, is_greedy: bool, metrics: Sequence[str]) -> dict[str, float]:
    out = {"acc": float(int(is_greedy)), "perplexity": ll}
    return {m: out[m] for m in metrics}


def count_words(text: str) -> int:
    """lm-eval's word count for rolling perplexity: pieces between runs of whitespace."""
    return len(re.split(r"\s+", text))


def score_rolling(ll: float, text: str, metrics: Sequence[str]) -> dict[str, list[float]]:
    """Each value is [log-likelihood, words or bytes]: the aggregation weights by the second."""
    nbytes = len(text.encode("utf-8"))
    out = {
        "word_perplexity": [ll, count_words(text)],
        "byte_perplexity": [ll, nbytes],
        "bits_per_byte": [ll, nbytes],
    }
    return {m: out[m] for m in metrics}


_PUNCTUATION = str.maketrans("", "", string.punctuation)
_DIGITS = str.maketrans("", "", string.digits)


def exact_match(
    prediction: str,
    reference: str,
    *,
    regexes_to_ignore: Sequence[str] | None = None,
    ignore_case: bool = False,
    ignore_punctuation: bool = False,
    ignore_numbers: bool = False,
) -> float:
    """lm-eval's exact_match (ported from HF evaluate): patterns removed from both strings
    first, then case, ASCII punctuation and digits as asked."""
    for pattern in regexes_to_ignore or ():
        prediction = re.sub(pattern, "", prediction)
        reference = re.sub(pattern, "", reference)
    if ignore_case:
        prediction, reference = prediction.lower(), reference.lower()
    if ignore_punctuation:
        prediction, reference = prediction.translate(_PUNCTUATION), reference.translate(_PUNCTUATION)
    if ignore_numbers:
        prediction, reference = prediction.translate(_DIGITS), reference.translate(_DIGITS)
    return 1.0 if prediction == reference else 0.0


EXACT_MATCH_OPTIONS = ("regexes_to_ignore", "ignore_case", "ignore_punctuation", "ignore_numbers")


def score_generation(result: Any, gold: Any, metric: str, options: dict[str, Any]) -> float:
    """One generation metric for one document, with lm-eval's handling of several right
    answers (a list gold: 1 when any matches) and of a gold that is not a string."""
    if metric != "exact_match":
        raise ValueError(f"generate_until computes exact_match only, not {metric!r} (use process_results)")
    kwargs = {k: v for k, v in options.items() if k in EXACT_MATCH_OPTIONS}
    golds = list(gold) if isinstance(gold, (list, tuple)) else [gold]
    if not isinstance(gold, (list, tuple)) and not isinstance(result, list) and type(gold) is not type(result):
        golds = [type(result)(gold)]
    return 1.0 if any(exact_match(str(result), str(g), **kwargs) for g in golds) else 0.0


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def mean_stderr(values: Sequence[float]) -> float | str:
    """Sample standard deviation over sqrt(n); 'N/A' for one value, as lm-eval reports it."""
    n = len(values)
    if n < 2:
        return NA
    mu = mean(values)
    return math.sqrt(sum((x - mu) ** 2 for x in values) / (n - 1)) / math.sqrt(n)


def median(values: Sequence[float]) -> float:
    return sorted(values)[len(values) // 2]


def perplexity(values: Sequence[float]) -> float:
    return math.exp(-mean(values))


def _weighted_mean(pairs: Sequence[Sequence[float]]) -> float:
    return math.fsum(p[0] for p in pairs) / math.fsum(p[1] for p in pairs)


def weighted_perplexity(pairs: Sequence[Sequence[float]]) -> float:
    """exp(-sum of log-likelihoods / sum of words or bytes)."""
    return math.exp(-_weighted_mean(pairs))


def bits_per_byte(pairs: Sequence[Sequence[float]]) -> float:
    return -_weighted_mean(pairs) / math.log(2)


AGGREGATIONS = {
    "mean": mean,
    "median": median,
    "perplexity": perplexity,
    "weighted_perplexity": weighted_perplexity,
    "bits_per_byte": bits_per_byte,
}


def aggregation_for(metric: str) -> str:
    """The default aggregation of a metric (mean for one lm-eval's registry does not know)."""
    return METRICS.get(metric, ("mean", True))[0]


def aggregate(metric: str, values: Sequence[Any], aggregation: str | None = None) -> tuple[float, float | str]:
    """A task-level value and its standard error (closed form for a mean, as lm-eval; lm-eval
    bootstraps perplexity's and median's stderr and gives none for the weighted ones: N/A)."""
    name = aggregation or aggregation_for(metric)
    if name not in AGGREGATIONS:
        raise ValueError(f"metric {metric!r}: unknown aggregation {name!r} (known: {', '.join(AGGREGATIONS)})")
    value = AGGREGATIONS[name](values)
    return value, (mean_stderr(values) if name == "mean" else NA)


def weighted_mean(values: Sequence[float], sizes: Sequence[int], by_size: bool = True) -> float:
    weights = sizes if by_size else [1] * len(sizes)
    return sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights)


def pooled_stderr(stderrs: Sequence[float], sizes: Sequence[int]) -> float:
    """lm-eval's pooled sample stderr for a group weighted by subtask size."""
    var = sum((n - 1) * se**2 * n for n, se in zip(sizes, stderrs, strict=True)) / (sum(sizes) - len(sizes))
    return math.sqrt(var / sum(sizes))


def unweighted_stderr(stderrs: Sequence[float]) -> float:
    return math.sqrt(sum(se**2 for se in stderrs)) / len(stderrs)
