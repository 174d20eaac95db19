"""`python -m pytest_lmeval.report summarize reports/`: every run found under a folder in one
table (HELM's helm-summarize): a row per task and metric, a column per run, written as
markdown, JSON and LaTeX, and an HTML index that links each run's report and groups the runs as
helm-summarize does: a table per task with a row per run of a model, and a table per model
with a row per task.

A run is a folder holding results.json (its report.html beside it, when there is one). Runs
are ordered by date, oldest first; a metric a run did not measure is left blank. A run's label
is its model (with the revision its answers came from), its model arguments and its start
time to the minute; where two labels still read the same, to the second, and where they still
do, with the run's folder. The documents a run's results.json names (flipped under a
perturbation, flagged toxic) link to its report as `report.html#doc=<task>/<doc_id>`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2

from ..core.files import atomic_write

OUTPUTS = ("summary.md", "summary.json", "summary.tex", "index.html")


@dataclass
class Run:
    folder: Path
    model: str
    revision: str
    date: str  # ISO, UTC
    values: dict[tuple[str, str], float]  # (task, "metric,filter") -> value
    stderrs: dict[tuple[str, str], Any] = field(default_factory=dict)
    args: str = ""  # the model arguments, as given (secrets redacted in results.json)
    documents: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # task -> (doc id, why)
    name: str = ""  # the label, once find_runs made labels distinct

    @property
    def model_label(self) -> str:
        """The model, its revision and arguments: what the per-model tables group by."""
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.model}{rev}" + (f" [{self.args}]" if self.args else "")

    def time(self, seconds: bool = False) -> str:
        return self.date[: 19 if seconds else 16].replace("T", " ")

    @property
    def label(self) -> str:
        return self.name or f"{self.model_label} ({self.time()})"


def distinct_labels(runs: list[Run]) -> None:
    """Name each run by its model, arguments and time to the minute; to the second where two
    names collide, and with the run's folder where they still do."""
    for r in runs:
        r.name = f"{r.model_label} ({r.time()})"
    for use_seconds, use_folder in ((True, False), (True, True)):
        seen: dict[str, int] = {}
        for r in runs:
            seen[r.name] = seen.get(r.name, 0) + 1
        for r in runs:
            if seen[r.name] > 1:
                where = f", {r.folder.name}" if use_folder else ""
                r.name = f"{r.model_label} ({r.time(seconds=use_seconds)}{where})"


def _revision(doc: dict[str, Any]) -> str:
    """What the answers came from, as results.json's model fingerprint tells it: the hub
    commit, else the revision asked for, else the local weights' hash (`sha256:...`)."""
    config = doc.get("config") or {}
    fingerprint = config.get("model_fingerprint") or {}
    args = config.get("model_args_parsed") or {}
    for value in (fingerprint.get("commit"), args.get("revision")):
        if value:
            return str(value)[:12]
    weights = fingerprint.get("weights_sha256")
    return f"sha256:{str(weights)[:12]}" if weights else ""


def _date(doc: dict[str, Any]) -> str:
    if doc.get("start_time"):
        return str(doc["start_time"])
    if isinstance(doc.get("date"), (int, float)):
        return datetime.fromtimestamp(doc["date"], timezone.utc).isoformat()
    return ""


def load_run(path: Path) -> Run:
    doc = json.loads(path.read_text(encoding="utf-8"))
    values: dict[tuple[str, str], float] = {}
    stderrs: dict[tuple[str, str], Any] = {}
    for task, entry in (doc.get("results") or {}).items():
        for key, value in entry.items():
            if "," in key and "_stderr" not in key and isinstance(value, (int, float)) and not isinstance(value, bool):
                metric, _, filt = key.partition(",")
                values[(task, key)] = float(value)
                stderrs[(task, key)] = entry.get(f"{metric}_stderr,{filt}")
    model = str(doc.get("model_name") or (doc.get("config") or {}).get("model_name") or path.parent.name)
    args = (doc.get("config") or {}).get("model_args") or ""
    return Run(path.parent, model, _revision(doc), _date(doc), values, stderrs, str(args), _documents(doc))


def _documents(doc: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """The documents results.json names, per task: (doc id, why): flipped under a perturbation,
    flagged toxic."""
    out: dict[str, list[tuple[str, str]]] = {}

    def add(item: Any, why: str) -> None:
        task, _, doc_id = str(item).rpartition("-")
        if task and doc_id.isdigit():
            out.setdefault(task, []).append((doc_id, why))

    for robust in (doc.get("robustness") or {}).values():
        for perturbation, flips in (robust.get("flipped") or {}).items():
            for direction, ids in flips.items():
                for item in ids:
                    add(item, f"{perturbation}: {direction.replace('_', ' ')}")
    for fig in (doc.get("toxicity") or {}).values():
        for item in fig.get("flagged") or ():
            add(item, "toxic")
    return out


def find_runs(root: Path) -> list[Run]:
    runs = sorted((load_run(p) for p in sorted(root.rglob("results.json"))), key=lambda r: (r.date, str(r.folder)))
    distinct_labels(runs)
    return runs


def rows(runs: list[Run]) -> list[tuple[str, str, list[float | None]]]:
    """(task, metric key, value per run), tasks and metrics in the order the runs first show them."""
    keys: dict[tuple[str, str], None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.values))
    return [(task, key, [r.values.get((task, key)) for r in runs]) for task, key in keys]


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def markdown(runs: list[Run]) -> str:
    header = ["Task", "Metric", *(r.label for r in runs)]
    lines = ["|" + "|".join(header) + "|", "|" + "|".join(["---", "---", *("---:" for _ in runs)]) + "|"]
    for task, key, values in rows(runs):
        lines.append("|" + "|".join([task, key, *(_cell(v) for v in values)]) + "|")
    return "\n".join(lines) + "\n"


_TEX = str.maketrans(
    {c: f"\\{c}" for c in "&%$#_{}"} | {"~": r"\textasciitilde{}", "^": r"\^{}", "\\": r"\textbackslash{}"}
)


def latex(runs: list[Run]) -> str:
    def esc(text: str) -> str:
        return text.translate(_TEX)

    cols = "ll" + "r" * len(runs)
    out = [f"\\begin{{tabular}}{{{cols}}}", "\\hline"]
    out.append(" & ".join(["Task", "Metric", *(esc(r.label) for r in runs)]) + r" \\")
    out.append("\\hline")
    for task, key, values in rows(runs):
        out.append(" & ".join([esc(task), esc(key), *(_cell(v) for v in values)]) + r" \\")
    out += ["\\hline", "\\end{tabular}"]
    return "\n".join(out) + "\n"


def as_json(runs: list[Run], root: Path) -> dict[str, Any]:
    return {
        "runs": [
            {
                "folder": str(r.folder.relative_to(root)),
                "label": r.label,
                "model": r.model,
                "model_args": r.args,
                "revision": r.revision,
                "date": r.date,
            }
            for r in runs
        ],
        "rows": [
            {
                "task": task,
                "metric": key,
                "values": values,
                "stderrs": [r.stderrs.get((task, key)) for r in runs],
            }
            for task, key, values in rows(runs)
        ],
    }


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("pytest_lmeval.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


MAX_DOC_LINKS = 20  # documents linked per run and task in the index


def _href(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()


def doc_link(report: str, task: str, doc_id: str | int) -> str:
    """The link to one document in a run's report: `report.html#doc=<task>/<doc_id>`."""
    return f"{report}#doc={task}/{doc_id}"


def _grouped(runs: list[Run], links: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """helm-summarize's two views: per task, a row per run (its model and time); per model, a
    row per task (and run, where the model ran more than once)."""
    table = rows(runs)
    tasks = list(dict.fromkeys(task for task, _, _ in table))
    by_task = []
    for task in tasks:
        keys = [key for t, key, _ in table if t == task]
        body = []
        for run, link in zip(runs, links, strict=True):
            cells = [_cell(run.values.get((task, k))) for k in keys]
            if not any(cells):
                continue
            docs = [
                {"id": f"{task}-{d}", "why": why, "href": doc_link(link["href"], task, d) if link["href"] else None}
                for d, why in run.documents.get(task, [])[:MAX_DOC_LINKS]
            ]
            body.append({"run": link, "cells": cells, "docs": docs})
        by_task.append({"task": task, "metrics": keys, "rows": body})
    by_model = []
    for model in dict.fromkeys(r.model_label for r in runs):
        mine = [(r, link) for r, link in zip(runs, links, strict=True) if r.model_label == model]
        keys = list(dict.fromkeys(key for t, key, _ in table for r, _ in mine if (t, key) in r.values))
        body = []
        for task in tasks:
            for run, link in mine:
                if any((task, k) in run.values for k in keys):
                    body.append({"task": task, "run": link, "cells": [_cell(run.values.get((task, k))) for k in keys]})
        by_model.append({"model": model, "metrics": keys, "rows": body, "several": len(mine) > 1})
    return by_task, by_model


def index_html(runs: list[Run], root: Path, out_dir: Path) -> str:
    links = []
    for r in runs:
        report = r.folder / "report.html"
        href = _href(report, out_dir) if report.is_file() else None
        folder = r.folder.relative_to(root).as_posix()
        links.append({"label": r.label, "time": r.time(seconds=True), "folder": folder, "href": href})
    table = [(task, key, [_cell(v) for v in values]) for task, key, values in rows(runs)]
    by_task, by_model = _grouped(runs, links)
    return _ENV.get_template("summarize.html.j2").render(runs=links, rows=table, by_task=by_task, by_model=by_model)


def summarize(root: Path, out_dir: Path | None = None) -> list[Path]:
    """Write the four outputs into `out_dir` (default: `root`); the paths written."""
    out_dir = out_dir or root
    runs = find_runs(root)
    written = []
    for name, text in (
        ("summary.md", markdown(runs)),
        ("summary.json", json.dumps(as_json(runs, root), indent=2) + "\n"),
        ("summary.tex", latex(runs)),
        ("index.html", index_html(runs, root, out_dir)),
    ):
        atomic_write(out_dir / name, text)
        written.append(out_dir / name)
    return written
