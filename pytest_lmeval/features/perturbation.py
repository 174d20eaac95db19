"""Perturbed copies of each document's question, as HELM's robustness and fairness evaluations
make them (Liang et al., 2022, sec. 4.5 and 4.6), written in this project's own code.

`--perturb typos,lowercase` (or `@pytest.mark.lmeval_perturb("typos")` on a benchmark) adds one
item per selected document and perturbation: `test_x[arc_easy-3[typos]]`. Only the question of
the evaluated document is edited; few-shot examples, answer choices and the target are left
alone, so a perturbation can never move the right answer. Edits are seeded by `--seed`, the task,
the document and the perturbation, so every rerun and every xdist worker builds the same prompt,
and a perturbed prompt is cached and batched like any other request.

A multiple-input document (Winogrande: one context per option, a shared continuation) keeps its
options word for word wherever they occur; the text around them is perturbed once, so every
option's context and the continuation carry the same edits. A perplexity task
(loglikelihood_rolling) is left unperturbed, because its text is what it measures; the run says
which tasks were left out and why (`not_perturbed`, features/robustness.py).

This module builds the perturbed requests and sums up how each task held up under them. The
edits are in perturbation_edits.py and the word lists in perturbation_words.py; names other
modules have long taken from here are re-exported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from ..core.errors import LmevalError
from ..core.requests import DocRequests, Request
from ..tasks.benchmark import PERTURB_MARK
from ..tasks.templates import TemplateError, doc_to_choice, doc_to_target, doc_to_text
from .perturbation_edits import (
    ALIASES,
    FAIRNESS,
    PERTURBATIONS,
    perturbed_doc,
)

MARK = PERTURB_MARK


def parse_names(values: Iterable[str], where: str = "--perturb") -> tuple[str, ...]:
    """The perturbations named (comma-separated, `robustness` for HELM's set), in order,
    each once; an unknown name is one clear error."""
    out: list[str] = []
    for value in values:
        for name in (n.strip() for n in str(value).split(",")):
            if not name:
                continue
            names = ALIASES.get(name, (name,))
            for n in names:
                if n not in PERTURBATIONS:
                    known = ", ".join([*PERTURBATIONS, *ALIASES])
                    raise LmevalError(f"{where}: unknown perturbation {name!r} (known: {known})")
                if n not in out:
                    out.append(n)
    return tuple(out)


def selected(config: Any) -> tuple[str, ...]:
    """The perturbations --perturb (or the `lmeval_perturb` ini key) asks for."""
    value = config.getoption("lmeval_perturb", None) or config.getini("lmeval_perturb")
    return parse_names([value]) if value else ()


# output types whose documents are not perturbed, and why (printed once and kept in results.json)
NOT_PERTURBED = {
    "loglikelihood_rolling": (
        "loglikelihood_rolling scores the document's own text, its perplexity; perturbing it would change "
        "what is measured, not the prompt"
    ),
}


def why_not(task: Any) -> str | None:
    """Why the task's documents get no perturbed items, or None when they do."""
    return NOT_PERTURBED.get(task.config.output_type)


def supports(task: Any) -> bool:
    """Whether the task's documents get perturbed items; a task asked for them that does not is
    marked (`perturb_refused`), so the run can say which and why (features/robustness.py)."""
    reason = why_not(task)
    if reason is not None:
        task.perturb_refused = reason
    return reason is None


def not_perturbed(tasks: dict[str, Any], asked: bool) -> dict[str, str]:
    """Per task that perturbations were asked for (by --perturb, `asked`, or by its benchmark's
    marker) but that gets none: why."""
    out = {}
    for name, task in tasks.items():
        reason = why_not(task)
        if reason is not None and (asked or getattr(task, "perturb_refused", None)):
            out[name] = reason
    return out


def _options(doc: dict[str, Any], contexts: list[str]) -> list[str]:
    """A multiple-input document's options: its text fields that end one of its contexts (the
    names that fill Winogrande's blank)."""
    return [
        v for v in doc.values() if isinstance(v, str) and v.strip() and any(c.endswith(v) and c != v for c in contexts)
    ]


def _perturb_multiple_input(task: Any, work: DocRequests, name: str, seed: int) -> DocRequests:
    """A multiple-input document (Winogrande) perturbed the HELM way without changing the
    answer: its options (the names filling the blank) stay as they are, wherever they appear;
    the text around them (before the option and the continuation after it) is perturbed once,
    so every option's context gets the same edits."""
    where = f"{work.task}-{work.doc_id}: cannot perturb ({name})"
    cfg = task.config
    doc = task.docs[work.doc_id]
    contexts = list(task.field("doc_to_choice", cfg.doc_to_choice, work.doc_id))
    continuation = task.field("doc_to_target", cfg.doc_to_target, work.doc_id)
    options = _options(doc, contexts)
    if not options:
        raise LmevalError(f"{where}: none of the document's text fields ends its contexts, so its options are unknown")
    new_doc = perturbed_doc(doc, name, seed, work.task, work.doc_id, keep=options)
    try:
        new_contexts = list(doc_to_choice(cfg.doc_to_choice, new_doc))
        new_continuation = doc_to_target(cfg.doc_to_target, new_doc, has_choices=True)
    except (TemplateError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise LmevalError(f"{where}: the perturbed document's contexts fail: {exc}") from None
    for old, new in zip(contexts, new_contexts, strict=True):
        ending = max((o for o in options if old.endswith(o)), key=len)
        if not new.endswith(ending):
            raise LmevalError(f"{where}: a perturbed context no longer ends with its option {ending!r}")
    if not isinstance(continuation, str) or not isinstance(new_continuation, str):
        raise LmevalError(f"{where}: the continuation is not text")
    requests = []
    for i, req in enumerate(work.requests):
        if i >= len(contexts):  # acc_mutual_info's unconditional requests: no context in them
            requests.append(req)
            continue
        context, target = req.args[0], req.args[1]
        at = context.rfind(contexts[i])
        if at < 0 or not target.endswith(continuation):
            raise LmevalError(f"{where}: its context is not found as such in its prompt")
        context = context[:at] + new_contexts[i] + context[at + len(contexts[i]) :]
        target = target[: len(target) - len(continuation)] + new_continuation
        requests.append(Request(req.kind, (context, target, *req.args[2:])))
    return dataclasses.replace(
        work, requests=tuple(requests), choices=tuple(new_contexts), target=new_continuation, prompt=requests[0].args[0]
    )


def perturb_work(task: Any, work: DocRequests, name: str, seed: int) -> DocRequests:
    """The document's requests with its question perturbed in each prompt: doc_to_text
    rendered on the perturbed document (so the template's own words, "Question:" and
    "Answer:", stay as they are) in place of the original's, at its last place in the prompt
    (after the few-shot examples). Choices and target come from the original document.
    Multiple-input documents: see _perturb_multiple_input."""
    if task.multiple_input:
        return _perturb_multiple_input(task, work, name, seed)
    question = task.field("doc_to_text", task.config.doc_to_text, work.doc_id)
    if not isinstance(question, str) or not question:
        raise LmevalError(f"{work.task}-{work.doc_id}: no question text to perturb ({name})")
    doc = perturbed_doc(task.docs[work.doc_id], name, seed, work.task, work.doc_id)
    changed = doc_to_text(task.config.doc_to_text, doc, has_choices=task.config.doc_to_choice is not None)
    requests = []
    for req in work.requests:
        context = req.args[0]
        where = context.rfind(question)
        if where < 0:
            if context == "":  # acc_mutual_info's unconditional requests: no question in them
                requests.append(req)
                continue
            raise LmevalError(
                f"{work.task}-{work.doc_id}: cannot perturb ({name}): the question is not found as such in its prompt"
            )
        new = context[:where] + changed + context[where + len(question) :]
        requests.append(Request(req.kind, (new, *req.args[1:])))
    prompt = requests[0].args[0] if requests else work.prompt
    return dataclasses.replace(work, requests=tuple(requests), prompt=prompt)


# -- per-task robustness ----------------------------------------------------------------------
ROBUST = "robust"  # METRIC@robust: HELM's worst case over the perturbations
FAIR = "fairness"  # METRIC@fairness: the worst case over the fairness perturbations only (gender, dialect, names)
CORRECTNESS = ("acc", "exact_match", "acc_norm")  # the metric whose flips are listed


@dataclasses.dataclass
class Robustness:
    """One task's figures under its perturbations."""

    perturbations: list[str]
    values: dict[str, tuple[float, Any]]  # "METRIC@NAME,filter" -> (value, stderr), METRIC@robust too
    metric: str | None = None  # the 0/1 "metric,filter" whose flips are listed
    flipped: dict[str, dict[str, list[str]]] = dataclasses.field(default_factory=dict)  # name -> to_wrong/to_right
    documents: int = 0  # documents with the original and at least one perturbation scored

    def to_json(self) -> dict[str, Any]:
        return {
            "perturbations": self.perturbations,
            "documents": self.documents,
            "metric": self.metric,
            "flipped": self.flipped,
        }


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _worst(
    key: str, metric: str, among: list[str], both: list[int], base: dict, by_name: dict, hib: dict
) -> list | None:
    """Document by document, the worst of the original and its perturbations `among` (None
    when some document's value is not a number)."""
    worst = []
    for d in both:
        seen = [base[d].get(key)] + [by_name[n][d].get(key) for n in among if d in by_name[n]]
        seen = [v for v in seen if v is not None]
        if seen and all(_scalar(v) for v in seen):
            worst.append(min(seen) if hib.get(metric, True) else max(seen))
    return worst if worst and len(worst) == len(both) else None


def robustness(
    task: Any, originals: list[dict[str, Any]], perturbed: list[dict[str, Any]], aggregate: Callable
) -> Robustness | None:
    """Per perturbation, each metric over the perturbed documents (aggregated as the task
    aggregates it); per metric the worst case, document by document, over the original and
    its perturbations (HELM's robustness: min for higher-is-better metrics, max otherwise), and
    over the fairness perturbations alone where any ran (HELM's fairness, METRIC@fairness);
    and the documents whose 0/1 correctness flipped under each perturbation."""
    base = {r["doc_id"]: r["metrics"] for r in originals}
    names = [n for n in PERTURBATIONS if any(r["perturbation"] == n for r in perturbed)]
    if not names or not base:
        return None
    by_name: dict[str, dict[int, dict[str, Any]]] = {n: {} for n in names}
    for rec in perturbed:
        by_name[rec["perturbation"]][rec["doc_id"]] = rec["metrics"]
    keys = list(dict.fromkeys(k for m in base.values() for k in m))
    hib = task.config.higher_is_better()
    values: dict[str, tuple[float, Any]] = {}
    both = [d for d in base if any(d in by_name[n] for n in names)]
    for key in keys:
        metric, _, filter_name = key.partition(",")
        for name in names:
            got = [m[key] for m in by_name[name].values() if key in m]
            if got:
                values[f"{metric}@{name},{filter_name}"] = aggregate(metric, got, task.config.aggregation(metric))
        for label, among in ((ROBUST, names), (FAIR, [n for n in names if n in FAIRNESS])):
            worst = _worst(key, metric, among, both, base, by_name, hib) if among else None
            if worst is not None:
                values[f"{metric}@{label},{filter_name}"] = aggregate(metric, worst, task.config.aggregation(metric))
    out = Robustness(names, values, documents=len(both))
    out.metric = next(
        (
            k
            for m in CORRECTNESS
            for k in keys
            if k.partition(",")[0] == m and all(v.get(k) in (0, 1) for v in base.values())
        ),
        None,
    )
    if out.metric is not None:
        for name in names:
            pairs = [
                (d, base[d].get(out.metric), m.get(out.metric)) for d, m in sorted(by_name[name].items()) if d in base
            ]
            out.flipped[name] = {
                "to_wrong": [f"{task.name}-{d}" for d, a, b in pairs if a == 1 and b == 0],
                "to_right": [f"{task.name}-{d}" for d, a, b in pairs if a == 0 and b == 1],
            }
    return out
