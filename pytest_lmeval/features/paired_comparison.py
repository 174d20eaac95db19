"""The paired statistics behind --baseline: each metric of each task and group, compared
document by document with the same documents scored by the baseline run.

Pairing matters because both runs answer the same questions: much of what makes two
accuracies differ by chance is the questions themselves, and that part cancels in the
per-document differences. Comparing two means through their stderrs (an unpaired test, as
lm-eval's comparison script does) keeps it, and so misses drops a paired test sees.

Which test a comparison gets:
- 0/1 scores whose aggregate is the mean over all pooled documents (a task's `acc`, a group
  weighted by size) get an exact McNemar test. If nothing changed, a discordant document (right
  in only one of the runs) is as likely to have been lost as gained, so the count lost is
  Binomial(discordant, 1/2) (scipy's exact two-sided binomial test). The interval of the
  difference is the Clopper-Pearson interval of the share lost among discordant documents,
  rescaled, so it excludes 0 exactly when p < alpha: the interval and p-value never disagree.
- Everything else (continuous scores, perplexities, a group averaging its tasks unweighted) gets
  a paired bootstrap of the aggregate itself: documents are resampled within each task, both runs
  use the same draw, and the percentile interval gives the p-value that inverts it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..scoring import metrics
from ..scoring.aggregate import Results, split_key
from ..scoring.document import short_name
from .baseline_run import BaselineRun, DocKey

BOOTSTRAP_ITERS = 10_000
BOOTSTRAP_CELLS = 4_000_000  # resampled values held in memory at once (rows x documents)


# -- what is compared -------------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    """One row of the comparison: a task, or a group over the tasks beneath it."""

    name: str
    tasks: tuple[str, ...]
    is_group: bool = False
    gated: bool = True
    keys: tuple[str, ...] | None = None  # a group's aggregated "metric,filter" keys; None: all
    weight_by_size: dict[str, bool] = field(default_factory=dict)  # group: per metric


@dataclass(frozen=True)
class Rule:
    """How a metric of a task aggregates, and which way is better."""

    aggregation: str = "mean"
    higher_is_better: bool = True


def scopes_of(results: Results, registry: Any) -> list[Scope]:
    """Every task and group of the run's results; the top-level ones (not inside another
    reported group: what the run was asked for) are gated."""
    inner = {c for children in results.group_subtasks.values() for c in children}
    tasks = set(results.task_names)
    out = []
    for name, entry in results.entries.items():
        if not entry.is_group:
            out.append(Scope(name, (name,), gated=name not in inner))
            continue
        specs = registry.groups[name].aggregate_metric_list
        if any("of" in s for s in specs):
            continue  # an average of different members' metrics: no per-document pairing
        by_size = {s["metric"]: bool(s.get("weight_by_size", True)) for s in specs}
        leaves = tuple(t for t in registry.leaves(name) if t in tasks)
        out.append(Scope(name, leaves, True, name not in inner, tuple(entry.values), by_size))
    return out


def rules_of(tasks: Mapping[str, Any]) -> dict[str, dict[str, Rule]]:
    """Each task's metrics' aggregation and direction, from its config."""
    return {
        name: {m: Rule(t.config.aggregation(m), hib) for m, hib in t.config.higher_is_better().items()}
        for name, t in tasks.items()
    }


# -- the comparison ---------------------------------------------------------------------------
@dataclass
class Comparison:
    """One metric of one task or group, before and after: kept whole (not just pass or fail) so
    results.json and the report can show the size of the change and its uncertainty."""

    name: str  # task or group
    metric: str  # "metric,filter"
    is_group: bool
    gated: bool
    n: int  # paired documents
    unpaired: int  # documents of this run the baseline lacks
    changed: int  # paired documents whose content differs from the baseline's (doc_hash)
    before: float
    after: float
    diff: float  # after - before, in `unit`
    ci: tuple[float, float]
    confidence: float
    unit: str  # "points" (proportions x 100) or "" (the metric's own units)
    p_value: float
    test: str
    higher_is_better: bool
    lost: list[str] = field(default_factory=list)  # "task-N": right before, wrong now (0/1 metrics)
    gained: list[str] = field(default_factory=list)  # wrong before, right now

    @property
    def label(self) -> str:
        return f"{self.name}:{short_name(self.metric)}"

    @property
    def drop(self) -> float:
        """How much worse the run got, in `unit` (negative: it improved)."""
        return -self.diff if self.higher_is_better else self.diff

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ci"] = list(self.ci)
        return out


@dataclass
class _Paired:
    """One task's paired values of one metric (arrays of n, or n x 2 for weighted metrics)."""

    task: str
    ids: list[int]
    before: np.ndarray
    after: np.ndarray
    rule: Rule


def _as_array(values: list[Any]) -> np.ndarray | None:
    """None for values no aggregation here can take (strings, nested lists): such a metric is
    skipped rather than compared wrongly."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 2):
        return arr
    return None


def _aggregate_rows(name: str, x: np.ndarray) -> np.ndarray:
    """metrics.AGGREGATIONS over the last document axis, for many resamples at once."""
    if name == "mean":
        return x.mean(axis=-1)
    if name == "median":
        return np.sort(x, axis=-1)[..., x.shape[-1] // 2]
    if name == "perplexity":
        return np.exp(-x.mean(axis=-1))
    if name in ("weighted_perplexity", "bits_per_byte"):
        ratio = x[..., 0].sum(axis=-1) / x[..., 1].sum(axis=-1)
        return np.exp(-ratio) if name == "weighted_perplexity" else -ratio / math.log(2)
    raise ValueError(f"no paired comparison for aggregation {name!r}")


def _binary(arr: np.ndarray) -> bool:
    """0/1 scores are what McNemar's test and the flipped-document lists need."""
    return arr.ndim == 1 and bool(np.all((arr == 0.0) | (arr == 1.0)))


def _combine(values: list[Any], sizes: list[int], by_size: bool) -> Any:
    """A group's value from its tasks' (floats, or arrays of resamples), as aggregate.py
    combines them: weighted by size, or a plain average."""
    weights = sizes if by_size else [1] * len(sizes)
    return sum(w * v for w, v in zip(weights, values, strict=True)) / sum(weights)


def _mcnemar(lost: int, gained: int, n: int, confidence: float) -> tuple[float, tuple[float, float]]:
    """Exact two-sided p-value and the matching interval of (gained - lost) / n."""
    from scipy import stats  # imported here: it costs half a second of every run's start-up

    discordant = lost + gained
    if discordant == 0:
        return 1.0, (0.0, 0.0)
    test = stats.binomtest(lost, discordant, 0.5)
    share = test.proportion_ci(confidence_level=confidence, method="exact")  # of the lost
    scale = discordant / n
    return float(test.pvalue), (scale * (1 - 2 * share.high), scale * (1 - 2 * share.low))


def _bootstrap(paired: list[_Paired], by_size: bool, confidence: float, seed: int) -> tuple[float, tuple[float, float]]:
    """Paired, stratified by task: each resample draws each task's documents with replacement
    and aggregates both runs over the same draw."""
    rng = np.random.default_rng(seed)
    sizes = [len(p.ids) for p in paired]
    rows = max(1, min(BOOTSTRAP_ITERS, BOOTSTRAP_CELLS // max(1, sum(sizes))))
    diffs = []
    done = 0
    while done < BOOTSTRAP_ITERS:
        b = min(rows, BOOTSTRAP_ITERS - done)
        before, after = [], []
        for p in paired:
            idx = rng.integers(0, len(p.ids), size=(b, len(p.ids)))
            before.append(_aggregate_rows(p.rule.aggregation, p.before[idx]))
            after.append(_aggregate_rows(p.rule.aggregation, p.after[idx]))
        diffs.append(_combine(after, sizes, by_size) - _combine(before, sizes, by_size))
        done += b
    d = np.concatenate(diffs)
    tail = (1 - confidence) / 2
    ci = (float(np.quantile(d, tail)), float(np.quantile(d, 1 - tail)))
    below, above = int((d <= 0).sum()), int((d >= 0).sum())
    p = min(1.0, 2 * (min(below, above) + 1) / (len(d) + 1))
    return p, ci


def _pair(
    task: str,
    key: str,
    before: Mapping[DocKey, Mapping[str, Any]],
    after: Mapping[DocKey, Mapping[str, Any]],
    rule: Rule,
) -> tuple[_Paired | None, int]:
    """Only documents scored in both runs can be paired; the rest are counted (returned beside
    the pairs) so the gate can say how much of the run went uncompared."""
    ids, b, a, unpaired = [], [], [], 0
    for (t, doc_id), now in after.items():
        if t != task or key not in now:
            continue
        then = before.get((t, doc_id))
        if then is None or key not in then:
            unpaired += 1
            continue
        ids.append(doc_id)
        b.append(then[key])
        a.append(now[key])
    if not ids:
        return None, unpaired
    order = np.argsort(ids, kind="stable")
    barr, aarr = _as_array(b), _as_array(a)
    if barr is None or aarr is None or barr.shape != aarr.shape:
        return None, unpaired
    return _Paired(task, [ids[i] for i in order], barr[order], aarr[order], rule), unpaired


def compare(
    baseline: BaselineRun,
    after: Mapping[DocKey, Mapping[str, Any]],
    after_hashes: Mapping[DocKey, str],
    scopes: list[Scope],
    rules: Mapping[str, Mapping[str, Rule]],
    alpha: float = 0.05,
    seed: int = 1234,
) -> list[Comparison]:
    """One comparison per scope and metric found in both runs' documents."""
    confidence = 1 - alpha
    out = []
    for scope in scopes:
        keys: dict[str, None] = {}
        for (task, _), now in after.items():
            if task in scope.tasks:
                keys.update(dict.fromkeys(now))
        for key in keys:
            if scope.keys is not None and key not in scope.keys:
                continue
            metric = split_key(key)[0]
            default = Rule(metrics.aggregation_for(metric), metrics.METRICS.get(metric, ("mean", True))[1])
            paired, unpaired = [], 0
            for task in scope.tasks:
                got, missing = _pair(task, key, baseline.metrics, after, rules.get(task, {}).get(metric, default))
                unpaired += missing
                if got is not None:
                    paired.append(got)
            if not paired or any(p.rule.aggregation not in metrics.AGGREGATIONS for p in paired):
                continue
            out.append(_compare_one(scope, key, paired, unpaired, baseline.hashes, after_hashes, confidence, seed))
    return out


def _compare_one(
    scope: Scope,
    key: str,
    paired: list[_Paired],
    unpaired: int,
    hashes_before: Mapping[DocKey, str],
    hashes_after: Mapping[DocKey, str],
    confidence: float,
    seed: int,
) -> Comparison:
    """Proportions are reported in points (x 100) so --max-drop reads as percentage points;
    other metrics stay in their own units."""
    metric = split_key(key)[0]
    by_size = scope.weight_by_size.get(metric, True) if scope.is_group else True
    sizes = [len(p.ids) for p in paired]
    before = float(_combine([_aggregate_rows(p.rule.aggregation, p.before) for p in paired], sizes, by_size))
    after = float(_combine([_aggregate_rows(p.rule.aggregation, p.after) for p in paired], sizes, by_size))
    binary = all(_binary(p.before) and _binary(p.after) for p in paired)
    lost, gained = [], []
    if binary:
        for p in paired:
            lost += [f"{p.task}-{i}" for i, x, y in zip(p.ids, p.before, p.after, strict=True) if x > y]
            gained += [f"{p.task}-{i}" for i, x, y in zip(p.ids, p.before, p.after, strict=True) if x < y]
    pooled_mean = all(p.rule.aggregation == "mean" for p in paired) and (by_size or len(paired) == 1)
    if binary and pooled_mean:
        p_value, ci = _mcnemar(len(lost), len(gained), sum(sizes), confidence)
        test = "exact McNemar"
    else:
        p_value, ci = _bootstrap(paired, by_size, confidence, seed)
        test = "paired bootstrap"
    proportion = all(p.rule.aggregation in ("mean", "median") for p in paired) and all(
        p.before.ndim == 1 and np.all((p.before >= 0) & (p.before <= 1) & (p.after >= 0) & (p.after <= 1))
        for p in paired
    )
    scale = 100.0 if proportion else 1.0
    changed = sum(
        1
        for p in paired
        for i in p.ids
        if (p.task, i) in hashes_before
        and (p.task, i) in hashes_after
        and hashes_before[(p.task, i)] != hashes_after[(p.task, i)]
    )
    return Comparison(
        name=scope.name,
        metric=key,
        is_group=scope.is_group,
        gated=scope.gated,
        n=sum(sizes),
        unpaired=unpaired,
        changed=changed,
        before=before,
        after=after,
        diff=(after - before) * scale,
        ci=(ci[0] * scale, ci[1] * scale),
        confidence=confidence,
        unit="points" if proportion else "",
        p_value=p_value,
        test=test,
        higher_is_better=paired[0].rule.higher_is_better,
        lost=lost,
        gained=gained,
    )
