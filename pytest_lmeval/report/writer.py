"""The output folder of a run, from its RunResult: results.json (lm-eval's schema), the
per-document file a later --baseline pairs against, report.html, and with --log-samples
samples/<task>.jsonl. One set, written aside and moved into place together (output_folder.py):
a folder never holds a results.json that contradicts the files beside it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.files import atomic_write
from ..features.baseline_run import PER_DOC_FILE, per_document_lines
from ..features.gating import doc_hashes
from .output_folder import Step, write_set
from .results import build_results, write_results, write_samples
from .run_page import write_html

if TYPE_CHECKING:
    from ..run.result import RunResult


def results_document(result: RunResult) -> dict[str, Any]:
    """results.json's content: lm-eval's keys, then ours (what was not scored and why, the
    gates, the features' sections)."""
    extra: dict[str, Any] = {
        "model_name": result.model,
        "model_info": result.model_info,
        "engine": result.engine,
        "partial": bool(result.not_scored),  # some selected documents have no score: see not_scored
        "not_scored": result.not_scored,
        "date": time.time(),
        **result.timings,
        **result.prompts,
        "gates": [g.to_json() for g in result.gates],
        **result.sections,
    }
    return build_results(result.results, result.tasks, result.registry, result.config, extra)


def write_reports(result: RunResult, out_dir: Path, log_samples: bool) -> list[Path]:
    """The set's files in `out_dir`, replacing an earlier run's set there whole. Raises
    ReportsNotWritten (the terminal's one line) when anything stops it: the earlier set is then
    as it was."""
    doc: dict[str, Any] = {}

    def results(folder: Path) -> list[Path]:
        doc.update(results_document(result))
        return [write_results(folder, doc)]

    def per_document(folder: Path) -> list[Path]:
        atomic_write(folder / PER_DOC_FILE, per_document_lines(result.records, doc_hashes(result)))
        return [folder / PER_DOC_FILE]

    steps: list[Step] = [
        ("results.json", results),
        (PER_DOC_FILE, per_document),
        ("report.html", lambda folder: [write_html(folder, result, doc)]),
    ]
    if log_samples:
        steps.append(("samples/", lambda folder: write_samples(folder, result.records + result.perturbed)))
    return write_set(out_dir, steps)
