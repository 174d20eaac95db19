"""report.html: a self-contained page (inline CSS and SVG, no network) built with Jinja2 from
templates/report.html.j2, and the multi-run comparison page."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import jinja2

from .results import atomic_write

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("pytest_lmeval.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def bar_chart(title: str, bars: list[tuple[str, float]], scale: float | None = None) -> str:
    """A horizontal bar chart as inline SVG (one bar per subtask)."""
    if not bars:
        return ""
    top = scale or max(1e-9, max(v for _, v in bars))
    row, label_w, bar_w = 18, 260, 420
    height = row * len(bars) + 30
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 70}" height="{height}" '
        f'role="img" aria-label="{html.escape(title)}">',
        f'<text x="0" y="14" class="title">{html.escape(title)}</text>',
    ]
    for i, (name, value) in enumerate(bars):
        y = 24 + i * row
        width = max(0.0, min(1.0, value / top)) * bar_w
        parts.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">{html.escape(name)}</text>')
        parts.append(f'<rect class="bar" x="{label_w}" y="{y + 2}" width="{width:.1f}" height="{row - 4}"/>')
        parts.append(f'<text x="{label_w + width + 4:.1f}" y="{y + 12}">{value:.4f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(title: str, labels: list[str], series: dict[str, list[float | None]]) -> str:
    """One metric across runs: a polyline per task, as inline SVG."""
    w, h, pad = 640, 260, 40
    values = [v for vs in series.values() for v in vs if v is not None]
    if not values or not labels:
        return ""
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1e-9
    step = (w - 2 * pad) / max(1, len(labels) - 1)
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{w + 220}" height="{h + 40}" role="img" '
        f'aria-label="{html.escape(title)}"><text x="0" y="14" class="title">{html.escape(title)}</text>'
    ]
    for i, label in enumerate(labels):
        parts.append(f'<text x="{pad + i * step:.1f}" y="{h + 30}" text-anchor="middle">{html.escape(label)}</text>')
    for k, (name, vs) in enumerate(series.items()):
        pts = [
            (pad + i * step, h - pad - (v - lo) / (hi - lo) * (h - 2 * pad)) for i, v in enumerate(vs) if v is not None
        ]
        if not pts:
            continue
        cls = f"s{k % 6}"
        parts.append(f'<polyline class="line {cls}" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}"/>')
        for x, y in pts:
            parts.append(f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="3"/>')
        parts.append(f'<text class="{cls}" x="{w + 10}" y="{30 + 16 * k}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _main_metric(entry: dict[str, Any]) -> tuple[str, float] | None:
    for key, value in entry.items():
        if "," in key and "_stderr" not in key and isinstance(value, (int, float)):
            return key, float(value)
    return None


def _rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, entry in doc["results"].items():
        for key, value in entry.items():
            if "," in key and "_stderr" not in key:
                metric, _, filt = key.partition(",")
                stderr = entry.get(f"{metric}_stderr,{filt}")
                rows.append({
                    "name": name, "alias": entry.get("alias", name), "metric": metric, "filter": filt,
                    "value": value, "stderr": stderr, "partial": entry.get("partial", False),
                    "n_shot": doc.get("n-shot", {}).get(name, ""), "is_group": name in doc.get("groups", {}),
                })  # fmt: skip
    return rows


def _leaves(name: str, subtasks: dict[str, list[str]]) -> list[str]:
    members = subtasks.get(name) or []
    return [leaf for m in members for leaf in (_leaves(m, subtasks) if subtasks.get(m) else [m])]


def _charts(doc: dict[str, Any]) -> list[str]:
    """A chart per group of its direct members, and for a group of groups (MMLU) one of all
    its tasks (the 57 subjects)."""
    charts = []
    subtasks = doc.get("group_subtasks", {})
    views = []
    for group, members in subtasks.items():
        if not members:
            continue
        views.append((group, members))
        if any(subtasks.get(m) for m in members):
            views.append((f"{group} (all {len(_leaves(group, subtasks))} tasks)", _leaves(group, subtasks)))
    for group, members in views:
        bars, metric = [], None
        for member in members:
            main = _main_metric(doc["results"].get(member, {}))
            if main:
                metric = metric or main[0]
                bars.append((doc["results"][member].get("alias", member).strip(" -"), main[1]))
        if bars:
            scale = 1.0 if all(0 <= v <= 1 for _, v in bars) else None
            charts.append(bar_chart(f"{group}: {metric} per subtask", bars, scale))
    return charts


def _flipped(state: Any) -> list[dict[str, Any]]:
    """Prompt, answer and target of documents whose correctness changed against the baseline."""
    samples = {(r["task"], r["doc_id"]): (r.get("samples") or [{}])[0] for r in state.records}
    out = []
    for comp in state.comparisons:
        for doc_id, direction in [(i, "right before, wrong now") for i in comp.lost] + [
            (i, "wrong before, right now") for i in comp.gained
        ]:
            s = samples.get((comp.task, doc_id), {})
            args = s.get("arguments", {})
            prompt = next(iter(args.values()), {}).get("arg_0", "") if args else ""
            out.append({
                "id": f"{comp.task}-{doc_id}", "metric": comp.metric, "direction": direction,
                "prompt": prompt, "answer": _answer(s), "target": s.get("target", ""),
            })  # fmt: skip
    return out


def _answer(sample: dict[str, Any]) -> str:
    resps = sample.get("filtered_resps") or []
    args = list((sample.get("arguments") or {}).values())
    if resps and isinstance(resps[0], (list, tuple)) and len(args) == len(resps):
        best = max(range(len(resps)), key=lambda i: float(resps[i][0]))
        return str(args[best].get("arg_1", ""))
    return str(resps[0]) if resps else ""


def render_report(state: Any, doc: dict[str, Any]) -> str:
    engine = doc.get("engine") or {}
    seconds = float(engine.get("model_seconds") or 0)
    meta = {
        "model": doc.get("model_name"),
        "model_args": doc["config"].get("model_args"),
        "limit": doc["config"].get("limit"),
        "num_fewshot": doc["config"].get("num_fewshot"),
        "started": doc.get("start_time"),
        "ended": doc.get("end_time"),
        "seconds": doc.get("total_evaluation_time_seconds"),
        "requests": engine.get("requests"),
        "from_cache": engine.get("from_cache"),
        "requests_per_second": round(engine.get("computed", 0) / seconds, 1) if seconds else None,
        "versions": doc.get("package_versions", {}),
        "git_hash": doc.get("git_hash"),
    }
    return _ENV.get_template("report.html.j2").render(
        meta=meta,
        rows=_rows(doc),
        charts=[jinja2.utils.markupsafe.Markup(c) for c in _charts(doc)],
        gates=[g.to_json() | {"details": g.details} for g in state.gates],
        comparisons=state.comparisons,
        flipped=_flipped(state),
        not_scored=doc.get("not_scored", []),
    )


def summary_fragment(state: Any) -> str:
    """The results table and gates alone, for pytest-html's report."""
    return _ENV.get_template("summary.html.j2").render(
        rows=_rows({"results": {n: e.to_json() for n, e in state.results.entries.items()}}),
        gates=[g.to_json() for g in state.gates],
    )


def write_html(out_dir: Path, state: Any, doc: dict[str, Any]) -> Path:
    path = out_dir / "report.html"
    atomic_write(path, render_report(state, doc))
    return path


def render_compare(runs: list[Path]) -> str:
    docs = []
    for run in runs:
        path = run / "results.json" if run.is_dir() else run
        docs.append((run.name if run.is_dir() else run.parent.name, json.loads(path.read_text(encoding="utf-8"))))
    labels = [name for name, _ in docs]
    metrics: dict[str, dict[str, list[float | None]]] = {}
    for i, (_, doc) in enumerate(docs):
        for task, entry in doc["results"].items():
            for key, value in entry.items():
                if "," in key and "_stderr" not in key and isinstance(value, (int, float)):
                    series = metrics.setdefault(key, {}).setdefault(task, [None] * len(docs))
                    series[i] = float(value)
    charts = [jinja2.utils.markupsafe.Markup(line_chart(m, labels, s)) for m, s in sorted(metrics.items())]
    return _ENV.get_template("compare.html.j2").render(labels=labels, charts=charts, metrics=metrics)
