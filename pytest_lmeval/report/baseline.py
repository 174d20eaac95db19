"""Comparing a run with a baseline run, document by document (paired), not by averages.

For 0/1 metrics (acc, exact_match) the test is exact McNemar: under "no change", each
discordant document is equally likely to have flipped either way, so the count of losses is
Binomial(discordant, 1/2); the interval is the paired Wald interval of the difference. For
other metrics it is a paired bootstrap of the mean difference. A gate fails only when the drop
exceeds --max-drop (in points: 1.0 = one percentage point) AND is significant at --alpha.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from ..errors import LmevalError
from .gates import Gate

BOOTSTRAP_ITERS = 10_000
PER_DOC_FILE = "documents.jsonl"


@dataclass
class Comparison:
    task: str
    metric: str
    n: int
    before: float
    after: float
    diff_points: float  # (after - before) * 100
    ci_points: tuple[float, float]
    p_value: float
    test: str
    lost: list[int]  # right before, wrong now (0/1 metrics)
    gained: list[int]  # wrong before, right now


def load_per_document(run: Path) -> dict[tuple[str, int], dict[str, float]]:
    """(task, doc_id) -> metrics of a finished run: from documents.jsonl, else samples/."""
    folder = run.parent if run.is_file() else run
    if not (folder / "results.json").is_file():
        raise LmevalError(f"--baseline {run}: no results.json there; pass an earlier run's output folder")
    out: dict[tuple[str, int], dict[str, float]] = {}
    per_doc = folder / PER_DOC_FILE
    if per_doc.is_file():
        for line in per_doc.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            out[(rec["task"], int(rec["doc_id"]))] = rec["metrics"]
        return out
    for path in sorted((folder / "samples").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            sample = json.loads(line)
            # one sample per document and filter: keys "metric,filter", as in documents.jsonl
            where = sample.get("filter", "none")
            metrics = {
                f"{m},{where}": sample[m] for m in sample.get("metrics", []) if isinstance(sample.get(m), (int, float))
            }
            out.setdefault((path.stem, int(sample["doc_id"])), {}).update(metrics)
    if not out:
        raise LmevalError(f"--baseline {run}: neither {PER_DOC_FILE} nor samples/*.jsonl found beside results.json")
    return out


def _is_binary(values: np.ndarray) -> bool:
    return bool(np.all((values == 0.0) | (values == 1.0)))


def compare(
    before: dict[tuple[str, int], dict[str, float]], after: dict[tuple[str, int], dict[str, float]], seed: int = 1234
) -> list[Comparison]:
    paired: dict[tuple[str, str], list[tuple[int, float, float]]] = defaultdict(list)
    for (task, doc_id), now in after.items():
        then = before.get((task, doc_id))
        if then is None:
            continue
        for metric, value in now.items():
            if metric in then and isinstance(value, (int, float)) and isinstance(then[metric], (int, float)):
                paired[(task, metric)].append((doc_id, float(then[metric]), float(value)))
    out = []
    for (task, metric), rows in sorted(paired.items()):
        rows.sort()
        ids = [r[0] for r in rows]
        b = np.array([r[1] for r in rows])
        a = np.array([r[2] for r in rows])
        n = len(rows)
        diff = a - b
        if _is_binary(a) and _is_binary(b):
            lost = [i for i, x, y in rows if x == 1.0 and y == 0.0]
            gained = [i for i, x, y in rows if x == 0.0 and y == 1.0]
            discordant = len(lost) + len(gained)
            p = 1.0 if discordant == 0 else float(stats.binomtest(len(lost), discordant, 0.5).pvalue)
            d = diff.mean()
            se = math.sqrt(max(discordant / n - d**2, 0.0) / n) if n else 0.0
            z = stats.norm.ppf(0.975)
            ci = ((d - z * se) * 100, (d + z * se) * 100)
            test = "exact McNemar"
        else:
            lost, gained = [], []
            rng = np.random.default_rng(seed)
            means = diff[rng.integers(0, n, size=(BOOTSTRAP_ITERS, n))].mean(axis=1)
            ci = (float(np.percentile(means, 2.5)) * 100, float(np.percentile(means, 97.5)) * 100)
            p = float(min(1.0, 2 * min((means <= 0).mean(), (means >= 0).mean())))
            test = "paired bootstrap"
        out.append(
            Comparison(
                task, metric, n, float(b.mean()), float(a.mean()), float(diff.mean()) * 100, ci, p, test, lost, gained
            )
        )
        del ids
    return out


def baseline_gates(
    comparisons: list[Comparison], max_drop: float, alpha: float, lower_is_better: set[str]
) -> list[Gate]:
    gates = []
    for c in comparisons:
        drop = -c.diff_points if c.metric.split(",")[0] not in lower_is_better else c.diff_points
        significant = c.p_value < alpha
        failed = drop > max_drop and significant
        summary = (
            f"{c.task}:{c.metric} {c.before:.4f} -> {c.after:.4f} ({c.diff_points:+.2f} points, "
            f"95% CI [{c.ci_points[0]:+.2f}, {c.ci_points[1]:+.2f}], {c.test} p={c.p_value:.4g}, n={c.n}); "
            f"fails when the drop > {max_drop:g} points and p < {alpha:g}"
        )
        details = [f"{c.task}-{i}: right before, wrong now" for i in c.lost] + [
            f"{c.task}-{i}: wrong before, right now" for i in c.gained
        ]
        gates.append(
            Gate(
                f"baseline[{c.task}:{c.metric}]",
                not failed,
                summary,
                {
                    "task": c.task,
                    "metric": c.metric,
                    "before": c.before,
                    "after": c.after,
                    "diff_points": c.diff_points,
                    "ci_points": list(c.ci_points),
                    "p_value": c.p_value,
                    "test": c.test,
                    "n": c.n,
                    "max_drop": max_drop,
                    "alpha": alpha,
                    "flipped_to_wrong": [f"{c.task}-{i}" for i in c.lost],
                    "flipped_to_right": [f"{c.task}-{i}" for i in c.gained],
                },  # fmt: skip
                details,
            )
        )
    return gates


def per_document_lines(records: list[dict[str, Any]]) -> str:
    """documents.jsonl: every scored document's metrics, so a later run can pair with it."""
    rows = sorted(records, key=lambda r: (r["task"], r["doc_id"]))
    return "".join(json.dumps({"task": r["task"], "doc_id": r["doc_id"], "metrics": r["metrics"]}) + "\n" for r in rows)
