"""Generation until a stop sequence (GSM8K, BBH): the document's one instance is answered
`repeats` times; filters extract the answer from the text and metrics compare it with the
target."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...core.errors import LmevalError, NotScored
from ...core.requests import DocRequests, Request, Response
from ...scoring import lmeval_metrics, metrics
from .base import OutputType, target_fault

if TYPE_CHECKING:
    from ..config import TaskConfig
    from ..task import Task

_ENTRY_KEYS = {"metric", "aggregation", "higher_is_better", "hf_evaluate", "fn", "lmeval_fn"}


def is_sampling(gen_kwargs: dict[str, Any]) -> bool:
    """lm-eval's rule: do_sample when given, else sampling exactly when temperature > 0."""
    if gen_kwargs.get("do_sample") is not None:
        return bool(gen_kwargs["do_sample"])
    return float(gen_kwargs.get("temperature", 0.0) or 0.0) > 0.0


class Generation(OutputType):
    name = "generate_until"
    default_metrics = ("exact_match",)
    builtin_metrics = ("exact_match",)

    def check_metric(self, entry: dict[str, Any], where: str) -> None:
        if entry["metric"] == "exact_match":
            unknown = set(entry) - _ENTRY_KEYS - set(metrics.EXACT_MATCH_OPTIONS)
            if unknown:
                raise LmevalError(f"{where}: exact_match does not take {sorted(unknown)}")

    def generation_kwargs(self, cfg: TaskConfig) -> dict[str, Any] | None:
        """lm-eval's TaskConfig.__post_init__: temperature as a float; `until` defaults to the
        few-shot delimiter; a task without any gets greedy decoding to that delimiter."""
        if cfg.generation_kwargs is None:
            return {"temperature": 0.0, "do_sample": False, "max_gen_toks": 256, "until": [cfg.fewshot_delimiter]}
        if not isinstance(cfg.generation_kwargs, dict):
            raise LmevalError(f"{cfg.source}: task {cfg.task!r}: generation_kwargs must be a mapping")
        kwargs = dict(cfg.generation_kwargs)
        if "temperature" in kwargs:
            kwargs["temperature"] = float(kwargs["temperature"])
        kwargs.setdefault("until", [cfg.fewshot_delimiter])
        return kwargs

    def run_kwargs(self, cfg: TaskConfig, cli: dict[str, Any] | None) -> dict[str, Any]:
        return {**(cfg.generation_kwargs or {}), **(cli or {})}  # lm-eval: CLI gen_kwargs update the task's

    def build(self, task: Task, doc_id: int, contexts: list[str], target: Any) -> DocRequests:
        cfg = task.config
        # choices, when a generative task has them, name the answers the target indexes
        choices = tuple(task.field("doc_to_choice", cfg.doc_to_choice, doc_id)) if cfg.doc_to_choice else ()
        return DocRequests(task.name, doc_id, tuple(self._requests(task, contexts[0])), choices, target, None,
                           contexts[0])  # fmt: skip

    def _requests(self, task: Task, ctx: str) -> list[Request]:
        """`repeats` requests for the document's one instance. Greedy ones are identical (one
        computation); sampled ones carry seeds seed, seed+1, ... (the run's --seed unless the
        generation arguments give one), so repeats differ and a rerun gives the same text."""
        kwargs = dict(task.generation_kwargs)
        if not is_sampling(kwargs):
            return [Request.generate_until(ctx, kwargs)] * task.config.repeats
        base = int(kwargs.pop("seed", task.seed))
        return [Request.generate_until(ctx, {**kwargs, "seed": base + r}) for r in range(task.config.repeats)]

    def instances(self, responses: list[Response]) -> list[list[Response]]:
        return [list(responses)]  # one instance, answered `repeats` times

    def compute(self, task: Task, work: DocRequests, results: list[Any], wanted: list[str]) -> tuple[dict, Any]:
        cfg = task.config
        if work.choices and isinstance(work.target, int):  # an index into the choices
            fault = target_fault(work.target, work.choices)
            if fault is not None:
                raise NotScored(fault)
        gold = work.choices[work.target] if work.choices and isinstance(work.target, int) else work.target
        out: dict[str, Any] = {}
        for m in wanted:
            if cfg.is_catalogue_metric(m):  # lm-eval's metrics (bleu, chrf, `metric: !function`...)
                lm_gold = lmeval_metrics.cast_gold(gold, results[0], cfg.metrics, bool(work.choices))
                fn = cfg.catalogue_metric(m)
                out.update(lmeval_metrics.generation_values(m, fn, cfg.metric_options(m), lm_gold, results[0]))
            else:
                out[m] = metrics.score_generation(results[0], gold, m, cfg.metric_options(m))
        return out, results[0]

    def sample_requests(self, work: DocRequests) -> list[Request]:
        return [work.requests[0]]

    def run_config(self, task: Task) -> dict[str, Any]:
        return {"generation_kwargs": task.generation_kwargs}
