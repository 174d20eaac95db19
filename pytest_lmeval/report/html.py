"""report.html: a self-contained page (inline CSS and SVG, no script, no network) built with
Jinja2 from templates/report.html.j2; the fragment pytest-html's report carries; and the page
comparing several runs. SVG is written here rather than with a plotting library so the page
needs nothing at view time and the project nothing at install time."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from ..features import calibration
from ..features.baseline import MAX_RERUN_IDS, Comparison, rerun_expression
from .results import atomic_write

MAX_FLIPPED_SHOWN = 200  # per gate: prompts beyond these stay in results.json, by id
MAX_MEMBER_SERIES = 12  # compare page: a group's members get a chart of their own up to this many

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("pytest_lmeval.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

_PALETTE = 6  # colour classes s0..s5 in _style.html.j2


def _svg_open(title: str, width: float, height: float) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{html.escape(title)}">'
        f'<text x="0" y="14" class="title">{html.escape(title)}</text>'
    )


def _title_width(title: str) -> float:
    """About how wide a chart's bold 13px title draws: a small chart is made at least as wide,
    so its title is not cut off ("mmlu_anatomy: reliability (ECE-10 0.2102)")."""
    return 7.5 * len(title) + 8


Bar = tuple[str, float, "float | None", "int | None"]  # name, value, stderr, documents


def bar_chart(title: str, bars: list[Bar], scale: float | None = None) -> str:
    """A horizontal bar chart as inline SVG (one bar per subtask), each bar with its 95%
    interval (value +- 1.96 stderr) when it has a stderr: a 10-document subject at 0.30 is
    not the same news as a 1,000-document one."""
    if not bars:
        return ""
    top = scale or max(1e-9, max(v for _, v, _, _ in bars))
    row, label_w, bar_w = 18, 260, 420
    x = lambda v: label_w + max(0.0, min(1.0, v / top)) * bar_w  # noqa: E731
    parts = [_svg_open(title, label_w + bar_w + 170, row * len(bars) + 30)]
    for i, (name, value, stderr, n) in enumerate(bars):
        y = 24 + i * row
        width = x(value) - label_w
        parts.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">{html.escape(name)}</text>')
        parts.append(f'<rect class="bar" x="{label_w}" y="{y + 2}" width="{width:.1f}" height="{row - 4}"/>')
        label = f"{value:.4f}"
        end = x(value)
        if isinstance(stderr, (int, float)):
            half = 1.96 * stderr
            lo, hi = x(value - half), x(value + half)
            parts.append(
                f'<line class="ci" x1="{lo:.1f}" y1="{y + row / 2:.1f}" x2="{hi:.1f}" y2="{y + row / 2:.1f}">'
                f"<title>95% interval [{value - half:.4f}, {value + half:.4f}]</title></line>"
            )
            label += f" \u00b1{half:.3f}"
            end = max(end, hi)
        if n is not None:
            label += f" (n={n})"
        parts.append(f'<text x="{end + 4:.1f}" y="{y + 12}">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def interval_chart(title: str, rows: list[tuple[str, float, float, float, bool]], unit: str) -> str:
    """Differences with their intervals (a forest plot): one row per task or group, a line for
    the interval, a dot for the difference, the zero line for "no change"; failed gates red."""
    if not rows:
        return ""
    lo = min(0.0, *(r[2] for r in rows))
    hi = max(0.0, *(r[3] for r in rows))
    hi = hi if hi > lo else lo + 1.0
    row, label_w, plot_w, top = 18, 260, 420, 40
    x = lambda v: label_w + (v - lo) / (hi - lo) * plot_w  # noqa: E731
    height = top + row * len(rows) + 10
    parts = [_svg_open(title, label_w + plot_w + 150, height)]
    parts.append(f'<text x="{x(lo):.1f}" y="32" text-anchor="start">{lo:+.2f}</text>')
    parts.append(f'<text x="{x(hi):.1f}" y="32" text-anchor="end">{hi:+.2f} {html.escape(unit)}</text>')
    parts.append(f'<line class="zero" x1="{x(0):.1f}" y1="{top - 4}" x2="{x(0):.1f}" y2="{height - 6}"/>')
    for i, (name, diff, low, high, failed) in enumerate(rows):
        y = top + i * row + row / 2
        cls = "ci fail" if failed else "ci"
        parts.append(f'<text x="{label_w - 6}" y="{y + 4:.1f}" text-anchor="end">{html.escape(name)}</text>')
        parts.append(f'<line class="{cls}" x1="{x(low):.1f}" y1="{y:.1f}" x2="{x(high):.1f}" y2="{y:.1f}"/>')
        parts.append(f'<circle class="{cls}" cx="{x(diff):.1f}" cy="{y:.1f}" r="3.5"/>')
        parts.append(f'<text x="{label_w + plot_w + 8}" y="{y + 4:.1f}">{diff:+.2f} [{low:+.2f}, {high:+.2f}]</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(title: str, labels: list[str], series: dict[str, list[float | None]]) -> str:
    """One metric across runs: a polyline per task or group, with the value axis labelled."""
    values = [v for vs in series.values() for v in vs if v is not None]
    if not values or not labels:
        return ""
    w, h, pad, legend = 640, 260, 50, 16
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5 * max(abs(lo), 1e-3), hi + 0.5 * max(abs(hi), 1e-3)
    step = (w - 2 * pad) / max(1, len(labels) - 1)
    y = lambda v: h - pad - (v - lo) / (hi - lo) * (h - 2 * pad)  # noqa: E731
    x0 = pad if len(labels) > 1 else w / 2
    parts = [_svg_open(title, w + 260, max(h + 40, 40 + legend * len(series)))]
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(f'<line class="grid" x1="{pad}" y1="{y(v):.1f}" x2="{w - pad}" y2="{y(v):.1f}"/>')
        parts.append(f'<text x="{pad - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.4g}</text>')
    for i, label in enumerate(labels):
        parts.append(f'<text x="{x0 + i * step:.1f}" y="{h + 30}" text-anchor="middle">{html.escape(label)}</text>')
    for k, (name, vs) in enumerate(series.items()):
        pts = [(x0 + i * step, y(v)) for i, v in enumerate(vs) if v is not None]
        if not pts:
            continue
        cls = f"s{k % _PALETTE}"
        parts.append(f'<polyline class="line {cls}" points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in pts)}"/>')
        parts.extend(f'<circle class="{cls}" cx="{a:.1f}" cy="{b:.1f}" r="3"/>' for a, b in pts)
        parts.append(f'<text class="{cls}" x="{w + 10}" y="{30 + legend * k}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def reliability_chart(title: str, bins: list[Any]) -> str:
    """A reliability diagram: per equal-mass bin, mean confidence (x) against accuracy (y),
    a dot sized by the bin's documents; the diagonal is perfect calibration."""
    if not bins:
        return ""
    side, pad, top = 200, 34, 24
    total = sum(b.count for b in bins)
    x = lambda v: pad + v * side  # noqa: E731
    y = lambda v: top + (1 - v) * side  # noqa: E731
    width = max(side + pad + 20, _title_width(title))
    parts = [_svg_open(title, width, side + top + 34).replace('class="chart"', 'class="chart small"', 1)]
    parts.append(f'<rect class="frame" x="{pad}" y="{top}" width="{side}" height="{side}"/>')
    parts.append(f'<line class="zero" x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}"/>')
    for v in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{x(v):.1f}" y="{y(0) + 14:.1f}" text-anchor="middle">{v:g}</text>')
        parts.append(f'<text x="{pad - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    parts.append(f'<text x="{x(0.5):.1f}" y="{y(0) + 28:.1f}" text-anchor="middle">confidence</text>')
    points = " ".join(f"{x(b.confidence):.1f},{y(b.accuracy):.1f}" for b in bins)
    parts.append(f'<polyline class="line s0" points="{points}"/>')
    for b in bins:
        r = 2.5 + 6 * (b.count / total) ** 0.5
        parts.append(
            f'<circle class="bin" cx="{x(b.confidence):.1f}" cy="{y(b.accuracy):.1f}" r="{r:.1f}">'
            f"<title>{b.count} documents, confidence {b.low:.3f} to {b.high:.3f}: mean {b.confidence:.3f}, "
            f"accuracy {b.accuracy:.3f}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def latency_chart(title: str, seconds: list[float], bins: int = 12, axis: str = "seconds per request") -> str:
    """A histogram of the time per request, or of the time to first token (measurements of the
    run, not of the model)."""
    if not seconds:
        return ""
    top = max(seconds) or 1e-9
    counts = [0] * bins
    for s in seconds:
        counts[min(bins - 1, int(s / top * bins))] += 1
    w, h, pad, top_y = 260, 120, 34, 24
    most = max(counts)
    width = max(w + pad + 20, _title_width(title))
    parts = [_svg_open(title, width, h + top_y + 34).replace('class="chart"', 'class="chart small"', 1)]
    bar = w / bins
    for i, c in enumerate(counts):
        height = c / most * h
        x = pad + i * bar
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{top_y + h - height:.1f}" width="{bar - 1:.1f}" height="{height:.1f}">'
            f"<title>{c} requests, {i * top / bins:.4f} to {(i + 1) * top / bins:.4f} s</title></rect>"
        )
    parts.append(f'<text x="{pad}" y="{top_y + h + 14}" text-anchor="start">0</text>')
    parts.append(f'<text x="{pad + w}" y="{top_y + h + 14}" text-anchor="end">{top:.4f} s</text>')
    parts.append(f'<text x="{pad + w / 2}" y="{top_y + h + 28}" text-anchor="middle">{html.escape(axis)}</text>')
    parts.append(f'<text x="{pad - 4}" y="{top_y + 10}" text-anchor="end">{most}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _robustness(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per perturbed task: the metric whose flips are listed, its value as is, under each
    perturbation and in the worst case, and the flipped documents with a -k to rerun them."""
    out = []
    for name, robust in (doc.get("robustness") or {}).items():
        key = robust.get("metric")
        if not key:
            continue
        metric, _, filt = key.partition(",")
        entry = doc["results"].get(name, {})
        values = [("as is", entry.get(key))]
        values += [(p, entry.get(f"{metric}@{p},{filt}")) for p in robust["perturbations"]]
        values.append(("worst case", entry.get(f"{metric}@robust,{filt}")))
        flips = []
        for p, f in robust["flipped"].items():
            ids = f["to_wrong"] + f["to_right"]
            # each document as is and perturbed: items test_x[task-3] and test_x[task-3[typos]]
            rerun = rerun_expression(ids + [f"{i}[{p}]" for i in ids]) if 0 < len(ids) <= MAX_RERUN_IDS else None
            flips.append({"perturbation": p, "to_wrong": f["to_wrong"], "to_right": f["to_right"], "rerun_k": rerun})
        out.append({"task": name, "metric": metric, "documents": robust["documents"], "values": values, "flips": flips})
    return out


def _latency_charts(state: Any, doc: dict[str, Any]) -> list[str]:
    """Per task, its time per request; for generation where the backend tells it, its time to
    first token beside it."""
    charts = []
    for name in doc.get("efficiency") or {}:
        recs = [r.get("efficiency") or {} for r in state.records + getattr(state, "perturbed", []) if r["task"] == name]
        seconds = [s for e in recs for s in e.get("request_seconds", []) if s is not None]
        charts.append(latency_chart(f"{name}: time per request", seconds))
        first = [s for e in recs for s in e.get("first_token_seconds") or [] if s is not None]
        charts.append(latency_chart(f"{name}: time to first token", first, axis="seconds to first token"))
    return [c for c in charts if c]


def _reliability_charts(state: Any) -> list[str]:
    """A reliability diagram per multiple-choice task and group (a group pools its tasks)."""
    results = getattr(state, "results", None)
    if results is None:
        return []
    by_task: dict[str, list[dict[str, Any]]] = {}
    for rec in state.records:
        by_task.setdefault(rec["task"], []).append(rec)
    charts = []
    for name, entry in results.entries.items():
        if not any(k.startswith(f"{calibration.ECE},") for k in entry.values):
            continue
        members = [name] if not entry.is_group else state.registry.leaves(name)
        _, confs, right = calibration.pairs([r for m in members for r in by_task.get(m, ())])
        ece = next(v for k, v in entry.values.items() if k.startswith(f"{calibration.ECE},"))
        charts.append(
            reliability_chart(f"{name}: reliability (ECE-10 {ece:.4f})", calibration.reliability(confs, right))
        )
    return [c for c in charts if c]


# -- report.html ------------------------------------------------------------------------------
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


def _charts(doc: dict[str, Any]) -> list[str]:
    """A chart per group of its direct members, so each task appears once: MMLU's chart has
    its four categories, and each category's its subjects."""
    charts = []
    subtasks = doc.get("group_subtasks", {})
    sizes = doc.get("n-samples", {})
    order = list(doc.get("groups") or {})  # display order: outer groups first
    for group in sorted(subtasks, key=lambda g: order.index(g) if g in order else len(order)):
        members = subtasks[group]
        bars: list[Bar] = []
        metric = None
        for member in members:
            entry = doc["results"].get(member, {})
            main = _main_metric(entry)
            if main:
                metric = metric or main[0]
                name, _, filt = main[0].partition(",")
                stderr = entry.get(f"{name}_stderr,{filt}")
                n = (sizes.get(member) or {}).get("effective")
                alias = entry.get("alias", member).strip(" -")
                bars.append((alias, main[1], stderr if isinstance(stderr, (int, float)) else None, n))
        if bars:
            scale = 1.0 if all(0 <= v <= 1 for _, v, _, _ in bars) else None
            charts.append(bar_chart(f"{group}: {metric} per subtask", bars, scale))
    return charts


def _answer(sample: dict[str, Any] | None, metric: str, delimiter: str) -> str:
    """The model's answer in a sample: a multiple-choice document's pick under the metric's
    rule (acc: highest log-likelihood; acc_norm: per character of the choice), else the
    filtered generation."""
    if not sample:
        return ""
    resps = sample.get("filtered_resps") or []
    args = list((sample.get("arguments") or {}).values())
    if resps and isinstance(resps[0], (list, tuple)) and len(args) == len(resps):
        scores = [float(r[0]) for r in resps]
        choices = [str(a.get("arg_1", "")) for a in args]
        if metric.startswith("acc_norm"):
            scores = [s / max(1, len(c) - len(delimiter)) for s, c in zip(scores, choices, strict=True)]
        best = max(range(len(scores)), key=scores.__getitem__)
        if len(set(choices)) == 1:  # a multiple-input task (Winogrande): the contexts differ
            return f"choice {best}"
        return choices[best].removeprefix(delimiter)
    return str(resps[0]) if resps else ""


def _target(sample: dict[str, Any] | None, delimiter: str) -> str:
    """The right answer: a multiple-choice target (an index) as its choice's text."""
    if not sample:
        return ""
    target = str(sample.get("target", ""))
    args = list((sample.get("arguments") or {}).values())
    if target.isdigit() and len(args) > 1 and int(target) < len(args):
        choices = [str(a.get("arg_1", "")) for a in args]
        if len(set(choices)) == 1:  # a multiple-input task: the index names a context
            return f"choice {target}"
        return choices[int(target)].removeprefix(delimiter)
    return target


def _prompt(sample: dict[str, Any] | None) -> str:
    args = (sample or {}).get("arguments") or {}
    return str(next(iter(args.values()), {}).get("arg_0", "")) if args else ""


def _flipped(state: Any) -> list[dict[str, Any]]:
    """Per gate, the documents whose correctness changed: prompt, both answers, target."""
    samples = {
        (r["task"], r["doc_id"], s.get("filter", "none")): s for r in state.records for s in (r.get("samples") or [])
    }
    out = []
    for comp in state.comparisons:
        if not comp.gated or not (comp.lost or comp.gained):
            continue
        metric, _, filter_name = comp.metric.partition(",")
        docs = []
        for ids, direction in ((comp.lost, "right before, wrong now"), (comp.gained, "wrong before, right now")):
            for doc in ids[:MAX_FLIPPED_SHOWN]:
                task, _, num = doc.rpartition("-")
                now = samples.get((task, int(num), filter_name or "none"))
                then = state.baseline.sample(task, int(num), filter_name or "none") if state.baseline else None
                delimiter = state.tasks[task].config.target_delimiter if task in state.tasks else " "
                docs.append({
                    "id": doc, "direction": direction, "prompt": _prompt(now),
                    "answer": _answer(now, metric, delimiter), "before": _answer(then, metric, delimiter),
                    "target": _target(now, delimiter),
                })  # fmt: skip
        flipped = comp.lost + comp.gained
        out.append({
            "gate": f"baseline[{comp.label}]", "docs": docs, "total": len(flipped),
            "rerun_k": rerun_expression(flipped) if len(flipped) <= MAX_RERUN_IDS else None,
            "has_before": any(d["before"] for d in docs),
        })  # fmt: skip
    return out


def _interval_charts(comparisons: list[Comparison], failed: set[str]) -> list[str]:
    by_metric: dict[str, list[Comparison]] = {}
    for c in comparisons:
        by_metric.setdefault(c.metric, []).append(c)
    charts = []
    for metric, comps in by_metric.items():
        rows = [(c.name, c.diff, c.ci[0], c.ci[1], f"baseline[{c.label}]" in failed) for c in comps]
        unit = comps[0].unit or "(metric units)"
        title = f"{metric}: difference to the baseline, {comps[0].confidence:.0%} interval"
        charts.append(interval_chart(title, rows, unit))
    return charts


def _meta(doc: dict[str, Any]) -> dict[str, Any]:
    engine = doc.get("engine") or {}
    seconds = float(engine.get("model_seconds") or 0)
    return {
        "model": doc.get("model_name"),
        "model_args": doc["config"].get("model_args"),
        "model_info": doc.get("model_info") or {},
        "limit": doc["config"].get("limit"),
        "num_fewshot": doc["config"].get("num_fewshot"),
        "started": doc.get("start_time"),
        "ended": doc.get("end_time"),
        "seconds": doc.get("total_evaluation_time_seconds"),
        "requests": engine.get("requests"),
        "from_cache": engine.get("from_cache"),
        "computed": engine.get("computed"),
        "model_seconds": seconds,
        "requests_per_second": round(engine.get("computed", 0) / seconds, 1) if seconds else None,
        "tokens_per_second": round(engine["tokens"] / seconds, 1) if seconds and engine.get("tokens") else None,
        "versions": doc.get("package_versions", {}),
        "git_hash": doc.get("git_hash"),
    }


def render_report(state: Any, doc: dict[str, Any]) -> str:
    gates = [g.to_json() | {"details": g.details} for g in state.gates]
    failed = {g["name"] for g in gates if not g["passed"]}
    return _ENV.get_template("report.html.j2").render(
        meta=_meta(doc),
        rows=_rows(doc),
        charts=[Markup(c) for c in _charts(doc)],
        reliability=[Markup(c) for c in _reliability_charts(state)],
        efficiency=doc.get("efficiency") or {},
        robustness=_robustness(doc),
        latency=[Markup(c) for c in _latency_charts(state, doc)],
        gates=gates,
        failed=len(failed),
        baseline=(doc.get("baseline") or None),
        comparisons=state.comparisons,
        interval_charts=[Markup(c) for c in _interval_charts(state.comparisons, failed)],
        flipped=_flipped(state),
        not_perturbed=doc.get("not_perturbed") or {},
        not_scored=doc.get("not_scored", []),
        partial=bool(doc.get("partial")),
        scored=sum(1 for r in state.records if "error" not in r),
    )


def summary_fragment(state: Any) -> str:
    """The results table and gates alone, for pytest-html's report (its own page and styles:
    ours are scoped under .lmeval)."""
    gates = [g.to_json() for g in state.gates]
    return _ENV.get_template("fragment.html.j2").render(
        rows=_rows({"results": {n: e.to_json() for n, e in state.results.entries.items()}}),
        gates=gates,
        failed=sum(1 for g in gates if not g["passed"]),
    )


def write_html(out_dir: Path, state: Any, doc: dict[str, Any]) -> Path:
    path = out_dir / "report.html"
    atomic_write(path, render_report(state, doc))
    return path


# -- comparison of several runs ---------------------------------------------------------------
def _load_run(run: Path) -> tuple[str, dict[str, Any]]:
    path = run / "results.json" if run.is_dir() else run
    folder = run if run.is_dir() else run.parent
    return folder.name, json.loads(path.read_text(encoding="utf-8"))


def _unique_labels(runs: list[Path], names: list[str]) -> list[str]:
    """Folder names, or the parent's too where two runs share one (reports/<model>/<time>)."""
    if len(set(names)) == len(names):
        return names
    folders = [r if r.is_dir() else r.parent for r in runs]
    return [f"{f.parent.name}/{f.name}" for f in folders]


def render_compare(runs: list[Path]) -> str:
    loaded = [_load_run(r) for r in runs]
    labels = _unique_labels(runs, [name for name, _ in loaded])
    docs = [doc for _, doc in loaded]
    values: dict[str, dict[str, list[float | None]]] = {}  # metric -> name -> per run
    stderrs: dict[str, dict[str, list[Any]]] = {}
    members: dict[str, list[str]] = {}
    inner: set[str] = set()
    for i, doc in enumerate(docs):
        for group, subs in (doc.get("group_subtasks") or {}).items():
            if subs:
                members.setdefault(group, [])
                members[group] += [s for s in subs if s not in members[group]]
                inner.update(subs)
        for name, entry in doc["results"].items():
            for key, value in entry.items():
                if "," in key and "_stderr" not in key and isinstance(value, (int, float)):
                    metric, _, filt = key.partition(",")
                    values.setdefault(key, {}).setdefault(name, [None] * len(docs))[i] = float(value)
                    stderrs.setdefault(key, {}).setdefault(name, [None] * len(docs))[i] = entry.get(
                        f"{metric}_stderr,{filt}"
                    )
    charts = []
    for metric, series in sorted(values.items()):
        top = {n: v for n, v in series.items() if n not in inner}
        charts.append(line_chart(f"{metric} across runs", labels, top))
        for group, subs in members.items():
            own = {n: series[n] for n in subs if n in series}
            if group in top and 1 < len(own) <= MAX_MEMBER_SERIES:
                charts.append(line_chart(f"{metric}: {group}'s members across runs", labels, own))
    return _ENV.get_template("compare.html.j2").render(
        labels=labels,
        models=[d.get("model_name") or "" for d in docs],
        charts=[Markup(c) for c in charts if c],
        values=values,
        stderrs=stderrs,
    )
