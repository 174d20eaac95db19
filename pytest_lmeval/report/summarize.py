"""`python -m pytest_lmeval.report summarize reports/`: every run found under a folder in one
table (HELM's helm-summarize): a row per task and metric, a column per run (model, revision,
date), written as markdown, JSON and LaTeX, and an HTML index that links each run's report.

A run is a folder holding results.json (its report.html beside it, when there is one). Runs
are ordered by date, oldest first; a metric a run did not measure is left blank.
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

    @property
    def label(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.model}{rev} ({self.date[:16].replace('T', ' ')})"


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
    return Run(path.parent, model, _revision(doc), _date(doc), values, stderrs)


def find_runs(root: Path) -> list[Run]:
    runs = [load_run(p) for p in sorted(root.rglob("results.json"))]
    return sorted(runs, key=lambda r: (r.date, str(r.folder)))


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
            {"folder": str(r.folder.relative_to(root)), "model": r.model, "revision": r.revision, "date": r.date}
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


def index_html(runs: list[Run], root: Path, out_dir: Path) -> str:
    links = []
    for r in runs:
        report = r.folder / "report.html"
        href = Path(os.path.relpath(report.resolve(), out_dir.resolve())).as_posix() if report.is_file() else None
        links.append({"label": r.label, "folder": r.folder.relative_to(root).as_posix(), "href": href})
    table = [(task, key, [_cell(v) for v in values]) for task, key, values in rows(runs)]
    return _ENV.get_template("summarize.html.j2").render(runs=links, rows=table)


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
