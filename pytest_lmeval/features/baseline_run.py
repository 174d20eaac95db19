"""An earlier run read back as a baseline: its per-document metrics and document hashes.

Every run writes documents.jsonl so that it can serve as a later run's baseline whether or not
it logged samples; a run that did log samples (ours, or lm-eval's own) can serve from those
instead. Pairing needs documents, not averages, which is why results.json alone is not enough.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import LmevalError
from ..scoring.document import sha256

PER_DOC_FILE = "documents.jsonl"

DocKey = tuple[str, int]  # (task, doc_id)


def doc_hash(doc: Any) -> str:
    """Hashed exactly as lm-eval hashes a document in its samples, so a run of either tool can
    tell whether the other scored the same content under the same id."""
    return sha256(json.dumps(doc, indent=2, default=str, ensure_ascii=False))


@dataclass
class BaselineRun:
    """An earlier run's output folder, reduced to what a comparison needs."""

    folder: Path
    metrics: dict[DocKey, dict[str, Any]]  # "metric,filter" -> per-document value
    hashes: dict[DocKey, str]
    info: dict[str, Any]  # model, time and settings from its results.json

    def sample(self, task: str, doc_id: int, filter_name: str) -> dict[str, Any] | None:
        """The baseline's logged sample of a document, if it logged one: the report shows the
        baseline's answer beside the new one. Each task's file is read once, on first use."""
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
    """Reads documents.jsonl when the run wrote one (all of ours do), else the samples/*.jsonl
    of a run made with --log-samples, so lm-eval's own output folders work as baselines too."""
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
                # a sample per document and filter; keyed "metric,filter" to match documents.jsonl
                where = sample.get("filter", "none")
                values.setdefault(key, {}).update({f"{m},{where}": sample[m] for m in sample.get("metrics", [])})
                if sample.get("doc_hash"):
                    hashes[key] = sample["doc_hash"]
    if not values:
        raise LmevalError(f"--baseline {run}: neither {PER_DOC_FILE} nor samples/*.jsonl found beside results.json")
    return BaselineRun(folder, values, hashes, info)


def per_document_lines(records: list[dict[str, Any]], hashes: Mapping[DocKey, str]) -> str:
    """The text of documents.jsonl, a few hundred bytes per document: written by every run so
    that it can be a later run's baseline even without --log-samples."""
    rows = sorted(records, key=lambda r: (r["task"], r["doc_id"]))
    out = []
    for r in rows:
        line = {"task": r["task"], "doc_id": r["doc_id"], "metrics": r["metrics"]}
        h = hashes.get((r["task"], r["doc_id"]))
        if h:
            line["doc_hash"] = h
        out.append(json.dumps(line) + "\n")
    return "".join(out)
