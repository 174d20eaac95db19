"""compare.html (`python -m pytest_lmeval.report compare RUN ...`): each metric charted across
several runs, such as the checkpoints of one training run in the order given.

It reads only the runs' results.json, so runs made by different versions of the plugin, or on
other machines, can be compared as long as their folders are at hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from markupsafe import Markup

from .document_browser import read_embedded
from .page_templates import PAGES
from .svg_charts import line_chart

MAX_MEMBER_SERIES = 12  # a group's members get a chart of their own up to this many
MAX_FLIPPED = 500  # flipped documents shown per pair of runs; the rest are counted


def _answer(d: dict[str, Any]) -> str:
    """A document's answer as report.html's browser shows it (document_browser.py's fields)."""
    if "k" in d and d.get("ch"):
        return str(d["ch"][d["k"]])
    if d.get("f"):
        return str(next(iter(d["f"].values())))
    return str(d.get("g", d.get("r", "")))


def _verdict(ok: Any) -> str:
    return "right" if ok is True else "wrong" if ok is False else ""


def _flipped(runs: list[Path], labels: list[str]) -> list[dict[str, Any]]:
    """Per pair of consecutive runs, the documents right in one and wrong in the other, with
    both runs' answers, from the documents each run's report.html embeds."""
    pages = [read_embedded((r if r.is_dir() else r.parent) / "report.html") for r in runs]
    by_run = [{(d["t"], d["i"]): d for d in (p or {}).get("docs", [])} for p in pages]
    out, anchored = [], set()
    for n in range(len(runs) - 1):
        before, after = by_run[n], by_run[n + 1]
        keys = [k for k in after if k in before and None not in (before[k]["ok"], after[k]["ok"])]
        flips = [k for k in keys if before[k]["ok"] != after[k]["ok"]]
        docs = []
        for key in flips[:MAX_FLIPPED]:
            then, now = before[key], after[key]
            context = (pages[n + 1] or {}).get("contexts", [])
            docs.append({
                "anchor": None if key in anchored else f"doc={key[0]}/{key[1]}", "id": f"{key[0]}-{key[1]}",
                "lost": bool(then["ok"]), "prompt": now["p"], "context": context[now["c"]] if "c" in now else "",
                "target": now["y"], "answers": [_answer(then), _answer(now)],
                "results": [_verdict(then["ok"]), _verdict(now["ok"])],
                "confidence": [then.get("cf"), now.get("cf")],
            })  # fmt: skip
            anchored.add(key)
        out.append({
            "before": labels[n], "after": labels[n + 1], "docs": docs, "total": len(flips), "paired": len(keys),
            "missing": pages[n] is None or pages[n + 1] is None,
        })  # fmt: skip
    return out


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
    return PAGES.get_template("compare.html.j2").render(
        labels=labels,
        models=[d.get("model_name") or "" for d in docs],
        charts=[Markup(c) for c in charts if c],
        values=values,
        stderrs=stderrs,
        flipped=_flipped(runs, labels),
    )
