"""The document browser of report.html: every scored document of the run, as compact JSON data
embedded in the page and rendered a page at a time by a small script (templates/browser.js.j2),
so that all of MMLU (14,042 documents) stays one self-contained file that opens at once.

Each document carries what explains its score: its prompt (the few-shot context stored once per
task and folded on the page), the choices with their log-likelihoods and the one picked, or the
generated text and what each filter extracted, the target, whether it was right, its
confidence, its perturbed variants, whether it flipped against the baseline (with the
baseline's answer where the baseline's folder still has it) and the -k that reruns it.
A document is linkable as `report.html#doc=<task>/<doc_id>`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from markupsafe import Markup

from ..features.flipped_documents import rerun_expression
from ..scoring.calibration import CONFIDENCE
from ..scoring.document import SHOWN

DATA_ID = "lmeval-documents"  # the <script type="application/json"> element holding the data
RIGHT_METRICS = ("acc", "exact_match", "acc_norm")  # a document is right by the first of these


def embed_json(data: Any) -> Markup:
    """JSON safe inside <script>: a `<` in any text (`</script>`, `<!--`) is written `\\u003c`,
    and the line separators JavaScript once refused are escaped too."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    text = text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return Markup(text)


def read_embedded(page: Path) -> dict[str, Any] | None:
    """The documents a report.html embeds (a baseline's, or a compared run's); None when the page
    is missing or was written before it embedded them."""
    try:
        text = page.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    found = re.search(rf'<script type="application/json" id="{DATA_ID}">(.*?)</script>', text, re.S)
    if not found:
        return None
    try:
        return json.loads(found.group(1))
    except ValueError:
        return None


def is_right(metrics: dict[str, Any]) -> bool | None:
    """As a scored document's item reports it: by its first 0/1 metric, under the first filter."""
    for name in RIGHT_METRICS:
        for key, value in metrics.items():
            if key.partition(",")[0] == name and isinstance(value, (int, float)):
                return value == 1.0
    return None


def _shared_context(prompts: list[str], delimiter: str, fewshot: int) -> str:
    """The part of a task's prompts every document shares (description and few-shot examples
    under a fixed sampler), cut back to the end of a few-shot delimiter so that no document's
    own question is folded away."""
    if not prompts:
        return ""
    first, last = min(prompts), max(prompts)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    if len(prompts) == 1 and fewshot == 0:
        return ""
    cut = first.rfind(delimiter, 0, n) if delimiter else -1
    return first[: cut + len(delimiter)] if cut >= 0 else ""


def _fold(prompt: str, shared: str, delimiter: str, fewshot: int) -> tuple[str, str]:
    """(context folded on the page, the document's own part). Where few-shot examples differ
    per document, the document's own part starts after the prompt's last delimiter."""
    if shared and prompt.startswith(shared) and (fewshot == 0 or shared.count(delimiter) >= fewshot):
        return shared, prompt[len(shared) :]
    if fewshot and delimiter and delimiter in prompt:
        cut = prompt.rfind(delimiter) + len(delimiter)
        return prompt[:cut], prompt[cut:]
    return "", prompt


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _answer_fields(shown: dict[str, Any], kind: str) -> dict[str, Any]:
    """The model's answer, compactly: log-likelihoods and the pick, or the generation and the
    filters' extractions, or the raw answers."""
    resps = shown.get("resps") or []
    choices = shown.get("choices") or []
    out: dict[str, Any] = {}
    if kind == "choice" and choices:
        lls = [float(inst[0][0]) for inst in resps[: len(choices)] if inst and isinstance(inst[0], list)]
        if len(lls) == len(choices):
            out["ll"] = [round(v, 4) for v in lls]
            out["k"] = max(range(len(lls)), key=lls.__getitem__)
    elif kind == "generate" and resps and resps[0]:
        out["g"] = _text(resps[0][0])
        out["f"] = {
            name: _text(v[0] if isinstance(v, list) and len(v) == 1 else v) for name, v in shown["filtered"].items()
        }
    else:
        out["r"] = _text(resps)
    return out


def _target_text(shown: dict[str, Any]) -> str:
    target, choices = shown.get("target"), shown.get("choices") or []
    if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < len(choices):
        return choices[target]
    return _text(target)


class _Contexts:
    """Folded contexts, each stored once per task: MMLU's 57 subjects share 57 of them."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        return self.index.setdefault(text, len(self.index))

    def table(self) -> list[str]:
        return list(self.index)


def _kind(task: Any) -> str:
    name = getattr(getattr(task, "output", None), "name", "")
    return {"multiple_choice": "choice", "generate_until": "generate"}.get(name, "other")


def _flips(state: Any) -> dict[str, tuple[str, str]]:
    """id -> ("lost" or "gained", metric) for each document a baseline comparison flipped."""
    out: dict[str, tuple[str, str]] = {}
    for comp in getattr(state, "comparisons", None) or []:
        for ids, way in ((comp.lost, "lost"), (comp.gained, "gained")):
            for i in ids:
                out.setdefault(i, (way, comp.metric))
    return out


def _baseline_docs(state: Any) -> dict[str, dict[str, Any]]:
    baseline = getattr(state, "baseline", None)
    folder = getattr(baseline, "folder", None)
    data = read_embedded(Path(folder) / "report.html") if folder else None
    return {f"{d['t']}-{d['i']}": d for d in (data or {}).get("docs", [])}


def _rerun_command(doc: dict[str, Any]) -> str:
    """The run's own options that decide a document's answer; -k picks the document."""
    config = doc.get("config") or {}
    parts = ["pytest"]
    if doc.get("model_name"):
        parts.append(f"--model {doc['model_name']}")
    if config.get("model_args"):
        parts.append(f"--model-args '{config['model_args']}'")
    if config.get("num_fewshot") is not None:
        parts.append(f"--num-fewshot {config['num_fewshot']}")
    if config.get("data_dir"):
        parts.append(f"--data-dir {config['data_dir']}")
    return " ".join(parts)


def browser_data(state: Any, doc: dict[str, Any], baseline_answer: Any = None) -> dict[str, Any]:
    """The page's data: tasks (kind, folded contexts, n-shot), documents in task and id order,
    and what the rerun command is made of. `baseline_answer(task, doc_id, metric)` gives the
    baseline's answer from its logged samples where its page has none."""
    tasks = getattr(state, "tasks", {}) or {}
    records = [r for r in state.records if SHOWN in r]
    perturbed: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in getattr(state, "perturbed", None) or []:
        if SHOWN in r:
            perturbed.setdefault((r["task"], r["doc_id"]), []).append(r)
    flips, before = _flips(state), _baseline_docs(state) if getattr(state, "comparisons", None) else {}
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(records, key=lambda r: (r["task"], r["doc_id"])):
        by_task.setdefault(r["task"], []).append(r)
    contexts = _Contexts()
    task_info: dict[str, Any] = {}
    docs: list[dict[str, Any]] = []
    for name, recs in by_task.items():
        task = tasks.get(name)
        kind = _kind(task)
        delimiter = task.config.fewshot_delimiter if task is not None else "\n\n"
        fewshot = int((doc.get("n-shot") or {}).get(name) or 0)
        shared = _shared_context([r[SHOWN]["prompt"] for r in recs], delimiter, fewshot)
        task_info[name] = {"kind": kind, "n_shot": fewshot, "n": len(recs)}
        for r in recs:
            docs.append(
                _entry(r, kind, delimiter, fewshot, shared, contexts, perturbed, flips, before, baseline_answer)
            )
    return {
        "tasks": task_info,
        "contexts": contexts.table(),
        "docs": docs,
        "rerun": {"command": _rerun_command(doc), "k": rerun_expression(["{id}"])},
        "baseline": bool(getattr(state, "comparisons", None)),
    }


def _entry(
    r: dict[str, Any],
    kind: str,
    delimiter: str,
    fewshot: int,
    shared: str,
    contexts: _Contexts,
    perturbed: dict[tuple[str, int], list[dict[str, Any]]],
    flips: dict[str, tuple[str, str]],
    before: dict[str, dict[str, Any]],
    baseline_answer: Any,
) -> dict[str, Any]:
    shown = r[SHOWN]
    folded, own = _fold(shown["prompt"], shared, delimiter, fewshot)
    entry: dict[str, Any] = {"t": r["task"], "i": r["doc_id"], "p": own, "y": _target_text(shown)}
    if folded:
        entry["c"] = contexts(folded)
    if shown.get("choices"):
        entry["ch"] = shown["choices"]
    if shown.get("contexts"):
        entry["x"] = [c[len(folded) :] if c.startswith(folded) else c for c in shown["contexts"]]
    entry.update(_answer_fields(shown, kind))
    entry["ok"] = is_right(r["metrics"])
    entry["m"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in r["metrics"].items()}
    if isinstance(r.get(CONFIDENCE), (int, float)):
        entry["cf"] = round(float(r[CONFIDENCE]), 4)
    if r.get("truncated"):
        entry["tr"] = True
    variants = []
    for v in sorted(perturbed.get((r["task"], r["doc_id"]), []), key=lambda v: v["perturbation"]):
        vs = v[SHOWN]
        variant = {
            "n": v["perturbation"],
            "p": vs["prompt"][len(folded) :] if vs["prompt"].startswith(folded) else vs["prompt"],
        }
        variant.update(_answer_fields(vs, kind))
        variant["ok"] = is_right(v["metrics"])
        variants.append(variant)
    if variants:
        entry["pv"] = variants
    doc_id = f"{r['task']}-{r['doc_id']}"
    if doc_id in flips:
        way, metric = flips[doc_id]
        entry["fl"] = way
        then = before.get(doc_id)
        if then is not None:
            entry["b"] = {k: then[k] for k in ("ch", "g", "f", "k", "ll", "r", "ok", "cf") if k in then}
        elif baseline_answer is not None:
            answer = baseline_answer(r["task"], r["doc_id"], metric)
            if answer:
                entry["b"] = {"a": answer}
    return entry
