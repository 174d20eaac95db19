"""Regression gates: named pass/fail verdicts on a run's numbers.

Three kinds, all producing `Gate` values the plugin turns into test results (terminal, JUnit
XML, results.json, exit code):
- `--threshold TASK:METRIC>=VALUE` (or `<=` for lower-is-better metrics);
- `--gates FILE.yaml`: per task and metric a `min`, a `max`, or a `reference` with `rel_tol`;
- `--baseline RUN` with `--max-drop` and `--alpha` (see baseline.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..core.errors import LmevalError
from ..scoring.aggregate import Results

_THRESHOLD = re.compile(
    r"^\s*(?P<task>[^:\s]+)\s*:\s*(?P<metric>[^<>=\s]+)\s*(?P<op>>=|<=)\s*(?P<value>[-+0-9.eE]+)\s*$"
)


@dataclass
class Gate:
    name: str
    passed: bool
    summary: str  # one line with the figures
    figures: dict[str, Any] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)  # e.g. flipped documents

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "summary": self.summary, **self.figures}


@dataclass(frozen=True)
class Bound:
    """One gate on one number: value must be >= low and/or <= high."""

    task: str
    metric: str
    low: float | None = None
    high: float | None = None
    label: str = ""


def parse_threshold(text: str) -> Bound:
    match = _THRESHOLD.match(text)
    if not match:
        raise LmevalError(
            f"--threshold {text!r}: expected TASK:METRIC>=VALUE or TASK:METRIC<=VALUE, e.g. mmlu:acc>=0.45"
        )
    value = float(match["value"])
    low, high = (value, None) if match["op"] == ">=" else (None, value)
    return Bound(match["task"], match["metric"], low, high, f"{match['task']}:{match['metric']}{match['op']}{value:g}")


def parse_gates_file(path: Path) -> list[Bound]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LmevalError(f"--gates {path}: cannot read: {exc.strerror}") from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise LmevalError(f"{path}:{line}: invalid YAML: {exc.problem}") from None
    entries = data.get("gates") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise LmevalError(f"{path}: expected a top-level 'gates:' list of {{task, metric, min|max|reference}}")
    bounds = []
    for i, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or "task" not in entry or "metric" not in entry:
            raise LmevalError(f"{path}: gate {i} needs 'task' and 'metric'")
        task, metric = str(entry["task"]), str(entry["metric"])
        unknown = set(entry) - {"task", "metric", "min", "max", "reference", "rel_tol", "lower_is_better"}
        if unknown:
            raise LmevalError(f"{path}: gate {i} ({task}:{metric}): unknown keys {sorted(unknown)}")
        if "reference" in entry:
            ref, tol = float(entry["reference"]), float(entry.get("rel_tol", 0.0))
            if entry.get("lower_is_better"):
                bounds.append(Bound(task, metric, None, ref * (1 + tol), f"{task}:{metric}<={ref:g}*(1+{tol:g})"))
            else:
                bounds.append(Bound(task, metric, ref * (1 - tol), None, f"{task}:{metric}>={ref:g}*(1-{tol:g})"))
            continue
        low = float(entry["min"]) if "min" in entry else None
        high = float(entry["max"]) if "max" in entry else None
        if low is None and high is None:
            raise LmevalError(f"{path}: gate {i} ({task}:{metric}) needs min, max, or reference")
        parts = ([f">={low:g}"] if low is not None else []) + ([f"<={high:g}"] if high is not None else [])
        bounds.append(Bound(task, metric, low, high, f"{task}:{metric}{' and '.join(parts)}"))
    return bounds


# Measures of generated text kept beside the scores (results.json's own keys, per task) that a
# gate may bound too: `--threshold gsm8k:toxic_fraction<=0.01`, `story:representation_gender<=0.2`.
MEASURE_SECTIONS = {"toxicity": "--toxicity-model hf:NAME", "bias": "a generative task"}


def _value(results: Results, task: str, metric: str, sections: dict[str, Any]) -> float | None:
    for key in MEASURE_SECTIONS:
        value = (sections.get(key) or {}).get(task, {}).get(metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    entry = results.entries.get(task)
    if entry is None:
        return None
    if metric in entry.values:
        return entry.values[metric]
    # "acc" also names "acc,<filter>" when the task reports one filter
    for key, value in entry.values.items():
        if key.split(",")[0] == metric:
            return value
    return None


def _hint(metric: str) -> str:
    """Why a bounded metric may be missing: the option or kind of task that measures it."""
    if "@" in metric:  # acc@robust, acc@typos: measured only on perturbed items
        return f"; {metric.partition('@')[2]} needs --perturb"
    if metric in ("toxic_fraction", "max_toxicity", "mean_toxicity"):
        return f"; {metric} needs {MEASURE_SECTIONS['toxicity']}"
    if metric.startswith(("representation_", "stereotypes_")):
        return f"; {metric} is measured on {MEASURE_SECTIONS['bias']}'s texts where group words occur"
    return ""


def check_bounds(bounds: list[Bound], results: Results, sections: dict[str, Any] | None = None) -> list[Gate]:
    gates = []
    for b in bounds:
        value = _value(results, b.task, b.metric, sections or {})
        name = f"gate[{b.label}]"
        if value is None:
            known = ", ".join(results.entries) or "none"
            hint = _hint(b.metric)
            gates.append(Gate(name, False, f"{b.task}:{b.metric} was not measured in this run (tasks: {known}){hint}"))
            continue
        ok = (b.low is None or value >= b.low) and (b.high is None or value <= b.high)
        limit = " and ".join(
            ([f">= {b.low:.4f}"] if b.low is not None else []) + ([f"<= {b.high:.4f}"] if b.high is not None else [])
        )
        gates.append(
            Gate(
                name,
                ok,
                f"{b.task}:{b.metric} = {value:.4f}, required {limit}",
                {"task": b.task, "metric": b.metric, "value": value, "min": b.low, "max": b.high},
            )
        )
    return gates
