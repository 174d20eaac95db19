"""Turning a document's answers into its scores and its sample records.

Each of the task's filter pipelines (`none` = take_first when the task names none) turns the
answers into filtered values, and the metrics are computed once per pipeline, keyed
`metric,filter` as in lm-eval's results. The record is plain JSON data: it rides on the item's
test report (so it crosses xdist's wire unchanged) and is all the controller needs to aggregate
and to write samples (one per document and filter, lm-eval's sample schema).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.requests import DocRequests, Request, Response
from .filters import DEFAULT_FILTER

if TYPE_CHECKING:
    from ..tasks.task import Task


SHOWN = "shown"  # the record's key for what the report shows of the document (see shown())


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def metric_key(metric: str, filter_name: str) -> str:
    return f"{metric},{filter_name}"


def short_name(key: str) -> str:
    """What an item shows: `acc` for the default filter, `exact_match,strict-match` else."""
    metric, _, filter_name = key.partition(",")
    return metric if filter_name == DEFAULT_FILTER else key


@dataclass
class ScoredDoc:
    """One document's scores: as the item shows them, and the record its report carries."""

    task: str
    doc_id: int
    metrics: dict[str, Any]  # short_name(key) -> value
    record: dict[str, Any]

    @property
    def correct(self) -> bool | None:
        """Whether the model got it right, by the first 0/1 metric (under the task's first
        filter); None if there is none."""
        for name in ("acc", "exact_match", "acc_norm"):
            for key, value in self.metrics.items():
                if key.partition(",")[0] == name and isinstance(value, (int, float)):
                    return value == 1.0
        return None


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, tuples (weighted metrics) to lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _compute(task: Task, work: DocRequests, doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    """lm-eval's ConfigurableTask.process_results on one filter's values: a process_results
    helper's metrics, else the output type's built-in ones and the metrics written as
    functions of the document and the answer."""
    cfg = task.config
    if cfg.process_results is not None:
        out = cfg.process_results(doc, results)
        if not isinstance(out, dict):
            raise TypeError(f"process_results must return a dict of metrics, got {type(out).__name__}")
        return {k: _plain(v) for k, v in out.items()}
    written = {m: cfg.metric_function(m) for m in cfg.metrics if cfg.metric_function(m) is not None}
    builtin = [m for m in cfg.metrics if m not in written]
    out, answer = task.output.compute(task, work, results, builtin)
    for name, fn in written.items():
        out[name] = _plain(fn(doc, answer))
    return out


def score(
    task: Task, work: DocRequests, answers: dict[Request, Response], log_sample: bool, predict_only: bool = False
) -> ScoredDoc:
    """The document's metrics per filter, and its samples when logged; with `predict_only`
    (lm-eval's --predict_only) the filtered answers alone, no metric computed."""
    responses = [answers[r] for r in work.requests]
    doc = task.docs[work.doc_id]
    instances = task.output.instances(responses)
    values: dict[str, Any] = {}
    samples: list[dict[str, Any]] = []
    extracted: dict[str, Any] = {}
    for pipeline in task.config.filters:
        filtered = pipeline.apply([list(i) for i in instances], [doc] * len(instances))
        extracted[pipeline.name] = _json(filtered)
        per_filter = {} if predict_only else _compute(task, work, doc, filtered)
        values.update({metric_key(m, pipeline.name): v for m, v in per_filter.items()})
        if log_sample:
            samples.append(sample_record(task, work, instances, filtered, pipeline.name, per_filter))
    record: dict[str, Any] = {"task": work.task, "doc_id": work.doc_id, "metrics": values}
    record[SHOWN] = shown_record(task, work, instances, extracted)
    if log_sample:
        record["samples"] = samples
    shown = {short_name(k): v for k, v in values.items()}
    return ScoredDoc(work.task, work.doc_id, shown, record)


def _json(value: Any) -> Any:
    """Plain JSON: numbers, text and lists kept, anything else as its text."""
    value = _plain(value)
    if isinstance(value, list):
        return [_json(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def shown_record(task: Task, work: DocRequests, instances: list[list[Response]], extracted: dict[str, Any]) -> dict:
    """What report.html's document browser shows of a document, for every run (samples are
    only logged when asked for): the prompt as sent (perturbed, for a perturbed document), the
    choices, the target, the raw answers (log-likelihoods, or generated text) and what each
    filter extracted from them. Small beside the prompt, which the page stores once per
    few-shot context."""
    out: dict[str, Any] = {"prompt": work.prompt, "target": _json(work.target), "resps": _json(instances)}
    if work.choices:
        out["choices"] = list(work.choices)
    if task.multiple_input:  # one context per option, the same continuation
        out["contexts"] = [r.args[0] for r in work.requests[: len(work.requests) - work.unconditional]]
        out["target"] = _json(work.gold)
    out["filtered"] = extracted
    return out


def _strings(value: Any) -> Any:
    """lm-eval's sanitize_list: every leaf as a string, lists and tuples kept as lists."""
    if isinstance(value, (list, tuple)):
        return [_strings(v) for v in value]
    return str(value)


def sample_record(
    task: Task,
    work: DocRequests,
    instances: list[list[Response]],
    filtered: list[Any],
    filter_name: str,
    values: dict[str, Any],
) -> dict[str, Any]:
    """One line of samples/<task>.jsonl, in lm-eval's sample schema (as its tracker writes it)."""
    doc = task.docs[work.doc_id]
    requests = task.output.sample_requests(work)
    arguments = {}
    for i, req in enumerate(requests):
        args = (req.args[0], req.gen_kwargs) if req.kind == "generate_until" else req.args
        arguments[f"gen_args_{i}"] = {f"arg_{j}": arg for j, arg in enumerate(args)}
    return {
        "doc_id": work.doc_id,
        "doc": doc,
        "target": str(work.target),
        "arguments": arguments,
        "resps": _strings(instances),
        "filtered_resps": _strings(filtered),
        "filter": filter_name,
        "metrics": list(values),
        **values,
        "doc_hash": sha256(json.dumps(doc, indent=2, default=str, ensure_ascii=False)),
        "prompt_hash": sha256(work.requests[0].args[0]),
        "target_hash": sha256(str(work.target)),
    }
