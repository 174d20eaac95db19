"""report.html: one self-contained page per run (inline CSS, SVG and one small script, no
network) rendered from templates/report.html.j2.

It is meant to be the page a person opens when a run surprises them, in the order they read it:
the scores (charts, table, gates, the baseline differences with their intervals and the
documents that flipped), then every document (document_browser.py), then calibration,
robustness, the features' own sections and efficiency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from markupsafe import Markup

from ..core.files import atomic_write
from ..features.flipped_documents import MAX_RERUN_IDS, rerun_expression
from ..features.paired_comparison import Comparison
from ..scoring import calibration
from .document_browser import DATA_ID, browser_data, embed_json
from .helm_sections import helm_sections
from .page_templates import PAGES, result_rows
from .svg_charts import Bar, bar_chart, interval_chart, latency_chart, reliability_chart

MAX_FLIPPED_SHOWN = 200  # per gate: prompts beyond these stay in results.json, by id


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
        fairness = entry.get(f"{metric}@fairness,{filt}")
        if fairness is not None:  # the worst case over the fairness perturbations alone
            values.append(("worst case (fairness)", fairness))
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


def _main_metric(entry: dict[str, Any]) -> tuple[str, float] | None:
    """A group's chart has one axis, so each member is drawn by its first reported metric."""
    for key, value in entry.items():
        if "," in key and "_stderr" not in key and isinstance(value, (int, float)):
            return key, float(value)
    return None


def _bar(doc: dict[str, Any], member: str) -> tuple[str, Bar] | None:
    entry = doc["results"].get(member, {})
    main = _main_metric(entry)
    if not main:
        return None
    name, _, filt = main[0].partition(",")
    stderr = entry.get(f"{name}_stderr,{filt}")
    n = ((doc.get("n-samples") or {}).get(member) or {}).get("effective")
    alias = entry.get("alias", member).strip(" -")
    return main[0], (alias, main[1], stderr if isinstance(stderr, (int, float)) else None, n)


def _top_charts(doc: dict[str, Any]) -> list[str]:
    """The run's tasks and groups that no group holds, a chart per metric they are drawn by."""
    held = {m for members in (doc.get("group_subtasks") or {}).values() for m in members}
    by_metric: dict[str, list[Bar]] = {}
    for name in doc["results"]:
        bar = None if name in held else _bar(doc, name)
        if bar:
            by_metric.setdefault(bar[0], []).append(bar[1])
    charts = []
    for metric, bars in by_metric.items():
        scale = 1.0 if all(0 <= v <= 1 for _, v, _, _ in bars) else None
        charts.append(bar_chart(f"{metric} per task and group", bars, scale))
    return charts


def _charts(doc: dict[str, Any]) -> list[str]:
    """A chart of the top-level tasks and groups, then one per group of its direct members, so
    each task appears once: MMLU's chart has its four categories, and each category's its
    subjects."""
    charts = _top_charts(doc)
    subtasks = doc.get("group_subtasks", {})
    order = list(doc.get("groups") or {})  # display order: outer groups first
    for group in sorted(subtasks, key=lambda g: order.index(g) if g in order else len(order)):
        members = subtasks[group]
        bars: list[Bar] = []
        metric = None
        for member in members:
            bar = _bar(doc, member)
            if bar:
                metric = metric or bar[0]
                bars.append(bar[1])
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
                    "id": doc, "key": f"{task}/{num}", "direction": direction, "prompt": _prompt(now),
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
    """One chart per metric, since differences in different units cannot share an axis."""
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
    config = doc.get("config") or {}
    typed = config.get("model_name")  # as typed; doc["model_name"] adds the backend: dummy:m
    path = config.get("model_path")
    return {
        "model": doc.get("model_name") or typed,
        "model_path": path if path and path != typed else None,
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


def _baseline_answer(state: Any) -> Any:
    """The baseline's answer to a document from its logged samples, for a baseline whose
    report.html does not embed its documents."""

    def answer(task: str, doc_id: int, key: str) -> str:
        metric, _, filter_name = key.partition(",")
        then = state.baseline.sample(task, doc_id, filter_name or "none") if state.baseline else None
        delimiter = state.tasks[task].config.target_delimiter if task in state.tasks else " "
        return _answer(then, metric, delimiter)

    return answer


def render_report(state: Any, doc: dict[str, Any], sections: list[Markup] | None = None) -> str:
    """Reads the results from `doc` (the results.json being written) and what results.json does
    not keep (documents, comparisons, timings) from the run's state. `sections` are features'
    own parts of the page (HTML), placed after robustness."""
    gates = [g.to_json() | {"details": g.details} for g in state.gates]
    failed = {g["name"] for g in gates if not g["passed"]}
    browser = browser_data(state, doc, _baseline_answer(state))
    return PAGES.get_template("report.html.j2").render(
        meta=_meta(doc),
        rows=result_rows(doc),
        calibration_rows=result_rows(doc, calibration=True),
        browser_json=embed_json(browser),
        browser_data_id=DATA_ID,
        browser_total=len(browser["docs"]),
        browser_baseline=browser["baseline"],
        sections=list(sections or []),
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


def write_html(out_dir: Path, state: Any, doc: dict[str, Any]) -> Path:
    """Written atomically, so a run stopped halfway never leaves a truncated page behind."""
    path = out_dir / "report.html"
    atomic_write(path, render_report(state, doc, [Markup(html) for html in helm_sections(doc)]))
    return path
