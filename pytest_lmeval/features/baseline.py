"""Comparing a run with a baseline run document by document (paired), not by averages.

Both runs score the same documents, so most of the noise in two accuracies is shared: testing
the per-document differences is far more sensitive than comparing two means with their
stderrs (what an unpaired test, such as lm-eval's comparison script, does).

- A 0/1 metric whose aggregate is the mean over the pooled documents (a task's `acc`, a group
  weighted by size): exact McNemar. Under "no change", each discordant document (right in one
  run only) flipped either way with probability 1/2, so the number lost is
  Binomial(discordant, 1/2) (scipy's exact two-sided binomial test). The interval of the
  difference is the Clopper-Pearson interval of the share lost among the discordant documents,
  scaled to the difference: it excludes 0 exactly when p < alpha, so both figures agree.
- Anything else (a continuous metric, perplexities, a group averaging its tasks unweighted): a
  paired bootstrap of the aggregate itself, documents resampled within each task and the same
  resample used for both runs; percentile interval and the p-value that inverts it.

A gate fails only when the drop exceeds --max-drop (in points, 1.0 = one percentage point, for
metrics that are proportions; in the metric's own units otherwise) AND is significant at
--alpha. Only the entries the run was asked for (its top-level tasks and groups) are gates;
the comparisons beneath them (an MMLU group's 57 subjects) are reported, not gated, so one
noisy subject among many cannot fail a run on its own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import LmevalError
from ..scoring import metrics
from ..scoring.aggregate import Results, split_key
from ..scoring.document import sha256, short_name
from .gates import Gate

BOOTSTRAP_ITERS = 10_000
BOOTSTRAP_CELLS = 4_000_000  # resampled values held in memory at once (rows x documents)
PER_DOC_FILE = "documents.jsonl"
MAX_RERUN_IDS = 500  # flipped documents named in one -k expression

DocKey = tuple[str, int]  # (task, doc_id)


def doc_hash(doc: Any) -> str:
    """lm-eval's doc_hash (as in its samples): tells whether two runs scored the same document."""
    return sha256(json.dumps(doc, indent=2, default=str, ensure_ascii=False))


def rerun_expression(ids: Iterable[str]) -> str:
    """A -k expression selecting exactly these documents' items (ids `task-N`): each in
    brackets, as the item's name ends `[mmlu_anatomy-12]`, since -k matches substrings and
    `mmlu_anatomy-12` alone would also select mmlu_anatomy-120 to -129."""
    return " or ".join(f"[{i}]" for i in ids)


# -- the baseline run -------------------------------------------------------------------------
@dataclass
class BaselineRun:
    """An earlier run's output folder, as far as the comparison needs it."""

    folder: Path
    metrics: dict[DocKey, dict[str, Any]]  # "metric,filter" -> per-document value
    hashes: dict[DocKey, str]
    info: dict[str, Any]  # model, time and settings from its results.json

    def sample(self, task: str, doc_id: int, filter_name: str) -> dict[str, Any] | None:
        """The baseline's sample line for a document (when it logged samples), for its answer."""
        cache = self.__dict__.setdefault("_samples", {})
        if task not in cache:
            path = self.folder / "samples" / f"{task}.jsonl"
            rows: dict[tuple[int, str], dict[str, Any]] = {}
            if path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines():
                    s = json.loads(line)
                    rows[(int(s["doc_id"]), s.get("filter", "none"))] = s
            cache[task] = rows
        return cache[task].get((doc_id, filter_name))


def load_baseline(run: Path) -> BaselineRun:
    """An earlier run's per-document metrics: from its documents.jsonl (every run writes one),
    else from its samples/*.jsonl (a run made with --log-samples, also lm-eval's own)."""
    folder = run.parent if run.is_file() else run
    results = folder / "results.json"
    if not results.is_file():
        raise LmevalError(f"--baseline {run}: no results.json there; pass an earlier run's output folder")
    try:
        doc = json.loads(results.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LmevalError(f"--baseline {results}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    config = doc.get("config") or {}
    info = {
        "path": str(folder.resolve()),
        "model_name": doc.get("model_name") or config.get("model_name") or config.get("model"),
        "start_time": doc.get("start_time") or doc.get("date"),
        "num_fewshot": doc.get("n-shot"),
        "limit": config.get("limit"),
        "git_hash": doc.get("git_hash"),
    }
    values: dict[DocKey, dict[str, Any]] = {}
    hashes: dict[DocKey, str] = {}
    per_doc = folder / PER_DOC_FILE
    if per_doc.is_file():
        for line in per_doc.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            key = (rec["task"], int(rec["doc_id"]))
            values[key] = rec["metrics"]
            if rec.get("doc_hash"):
                hashes[key] = rec["doc_hash"]
    else:
        for path in sorted((folder / "samples").glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                sample = json.loads(line)
                key = (path.stem, int(sample["doc_id"]))
                # one sample per document and filter: keys "metric,filter", as in documents.jsonl
                where = sample.get("filter", "none")
                values.setdefault(key, {}).update({f"{m},{where}": sample[m] for m in sample.get("metrics", [])})
                if sample.get("doc_hash"):
                    hashes[key] = sample["doc_hash"]
    if not values:
        raise LmevalError(f"--baseline {run}: neither {PER_DOC_FILE} nor samples/*.jsonl found beside results.json")
    return BaselineRun(folder, values, hashes, info)


def per_document_lines(records: list[dict[str, Any]], hashes: Mapping[DocKey, str]) -> str:
    """documents.jsonl: every scored document's metrics (and doc_hash), so that any run can be a
    later run's baseline, with or without --log-samples. A few hundred bytes per document."""
    rows = sorted(records, key=lambda r: (r["task"], r["doc_id"]))
    out = []
    for r in rows:
        line = {"task": r["task"], "doc_id": r["doc_id"], "metrics": r["metrics"]}
        h = hashes.get((r["task"], r["doc_id"]))
        if h:
            line["doc_hash"] = h
        out.append(json.dumps(line) + "\n")
    return "".join(out)


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


# -- gates ------------------------------------------------------------------------------------
def _ids(ids: list[str], most: int = 10) -> str:
    return ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")


def _verdict(c: Comparison, max_drop: float, alpha: float) -> tuple[bool, str]:
    unit = f" {c.unit}" if c.unit else ""
    size = f"{abs(c.drop):.2f}{unit}"
    worse = "dropped" if c.higher_is_better else "rose"  # a perplexity gets worse by rising
    if c.drop <= 0:
        return True, f"no drop ({'improved by ' + size if c.drop < 0 else 'unchanged'})"
    if c.drop <= max_drop + 1e-9:  # 1e-9: a drop of exactly --max-drop, up to rounding, passes
        return True, f"{worse} {size}, within the {max_drop:g}{unit} allowed"
    if c.p_value >= alpha:
        return (
            True,
            f"{worse} {size} (more than {max_drop:g}{unit}) but p={c.p_value:.3g} >= {alpha:g}: not significant",
        )
    return False, f"{worse} {size} (more than {max_drop:g}{unit} allowed) and p={c.p_value:.3g} < {alpha:g}"


def baseline_gates(comparisons: list[Comparison], max_drop: float, alpha: float) -> list[Gate]:
    gates = []
    for c in comparisons:
        if not c.gated:
            continue
        passed, verdict = _verdict(c, max_drop, alpha)
        unit = f" {c.unit}" if c.unit else ""
        summary = (
            f"{c.label} {c.before:.4f} -> {c.after:.4f}: {c.diff:+.2f}{unit} "
            f"({c.confidence:.0%} CI {c.ci[0]:+.2f} to {c.ci[1]:+.2f}), {c.test} p={c.p_value:.4g}, "
            f"n={c.n}; {verdict}"
        )
        details = []
        if c.lost:
            details.append(f"right before, wrong now ({len(c.lost)}): {_ids(c.lost)}")
        if c.gained:
            details.append(f"wrong before, right now ({len(c.gained)}): {_ids(c.gained)}")
        flipped = c.lost + c.gained
        if flipped and len(flipped) <= MAX_RERUN_IDS:
            details.append(f'rerun the flipped documents: -k "{rerun_expression(flipped)}"')
        if c.unpaired:
            details.append(f"{c.unpaired} documents of this run are not in the baseline: not compared")
        if c.changed:
            details.append(f"{c.changed} paired documents differ in content from the baseline's (doc_hash)")
        figures = {
            "task": c.name,
            "metric": c.metric,
            "before": c.before,
            "after": c.after,
            "diff": c.diff,
            "unit": c.unit,
            "ci": list(c.ci),
            "confidence": c.confidence,
            "p_value": c.p_value,
            "test": c.test,
            "n": c.n,
            "unpaired": c.unpaired,
            "max_drop": max_drop,
            "alpha": alpha,
            "flipped_to_wrong": c.lost,
            "flipped_to_right": c.gained,
            "rerun_k": rerun_expression(flipped) if flipped else None,
        }
        gates.append(Gate(f"baseline[{c.label}]", passed, summary, figures, details))
    return gates


def nothing_paired_gate(baseline: BaselineRun) -> Gate:
    """A baseline that shares no document with the run is a mistake, not a pass."""
    return Gate(
        "baseline",
        False,
        f"no document of this run is in the baseline {baseline.folder} (other tasks, or another --limit?)",
        {"baseline": str(baseline.folder)},
    )
