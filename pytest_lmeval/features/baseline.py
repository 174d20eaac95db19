"""--baseline as gates: a run fails when a metric it was asked for got worse than an earlier
run by more than --max-drop, and the paired test says the drop is not chance.

Requiring both keeps a tiny but significant drop on a large set, or a large but noisy one on a
handful of documents, from failing a run. --max-drop is in points (1.0 = one percentage point)
for metrics that are proportions and in the metric's own units otherwise; significance is
tested at --alpha. Only the run's top-level tasks and groups are gated: the comparisons below
them (an MMLU group's 57 subjects) are reported but never fail the run, since among so many
one noisy subject would fail it by chance alone.

Reading the baseline run is in baseline_run.py, the statistics in paired_comparison.py and the
lists of flipped documents in flipped_documents.py; the names other modules take from here are
re-exported below.
"""

from __future__ import annotations

from .baseline_run import BaselineRun
from .flipped_documents import flip_lines, rerun_expression
from .gates import Gate
from .paired_comparison import Comparison


def _verdict(c: Comparison, max_drop: float, alpha: float) -> tuple[bool, str]:
    """Pass or fail with the reason in words, since a bare FAIL does not say whether the drop
    was too large, significant, or both."""
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
    """Gates for the gated comparisons only; each carries its figures for results.json and
    JUnit, and detail lines naming what flipped so a failure can be looked into at once."""
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
        details = flip_lines(c.lost, c.gained)
        flipped = c.lost + c.gained
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
