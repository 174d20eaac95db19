"""lm-eval's registered metrics and aggregations, called from the installed lm-eval package.

Catalogue tasks name metrics our output types do not compute themselves (f1 and mcc on multiple
choice; bleu, chrf, ter and HF evaluate metrics on generation; `metric: !function` helpers)
and aggregations over all documents (f1, matthews_corrcoef, bleu, `aggregation: !function`).
They are lm-eval's own functions, looked up in its registry (lm_eval.api.registry) and called
the way lm-eval 0.4.13's ConfigurableTask.process_results and its evaluator call them; nothing
here re-implements a metric. A document's value is what lm-eval's process_results gives
(a number, or the (gold, prediction) pair a corpus-level aggregation needs), kept per document
so the task-level aggregation sees every document, as lm-eval's does.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..core.errors import LmevalError

# lm-eval's multiple_choice process_results: the keys it fills beyond our built-in metrics.
CHOICE_METRICS = ("f1", "mcc", "brier_score")


def installed() -> bool:
    try:
        return importlib.util.find_spec("lm_eval") is not None
    except (ImportError, ValueError):
        return False


@functools.cache
def _registry() -> Any:
    import logging

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    import lm_eval.api.metrics  # noqa: F401  (fills the registries)
    from lm_eval.api import registry

    return registry


def _names(reg: Any) -> set[str]:
    return set(reg.keys()) if hasattr(reg, "keys") else set(reg)


def registered(metric: str) -> bool:
    """Whether lm-eval's own registry has the metric (not counting HF evaluate)."""
    return installed() and metric in _names(_registry().METRIC_REGISTRY)


def registered_aggregations() -> set[str]:
    return _names(_registry().AGGREGATION_REGISTRY) if installed() else set()


def default_aggregation(metric: str) -> str | None:
    """The name of the aggregation lm-eval registers for a metric (f1 -> 'f1', mcc ->
    'matthews_corrcoef'), None when lm-eval does not know the metric."""
    if not registered(metric):
        return None
    reg = _registry()
    try:
        fn = reg.get_metric_aggregation(metric)
    except (KeyError, ValueError):
        return None
    by_fn = {v: k for k, v in reg.AGGREGATION_REGISTRY.items()}
    return by_fn.get(fn)


def higher_is_better(metric: str) -> bool | None:
    if not registered(metric):
        return None
    try:
        value = _registry().is_higher_better(metric)
    except (KeyError, ValueError):
        return None
    return None if value is None else bool(value)


@functools.cache
def hf_evaluate_problem(metric: str) -> str | None:
    """Why an HF evaluate metric cannot be loaded here (None when it can)."""
    if importlib.util.find_spec("evaluate") is None:
        return "needs the `evaluate` package (pip install evaluate)"
    try:
        import evaluate

        evaluate.load(metric)
    except Exception as exc:  # offline and not cached, or its own dependencies missing
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"evaluate.load({metric!r}) failed: {first}"
    return None


@functools.cache
def _hf_compute(metric: str) -> Callable[..., Any]:
    import evaluate

    return evaluate.load(metric).compute


def metric_function(metric: str, *, hf_evaluate: bool = False) -> Callable[..., Any]:
    """lm-eval's get_metric: its registry first (unless hf_evaluate), else HF evaluate."""
    if not hf_evaluate and registered(metric):
        return _registry().get_metric(metric)
    problem = hf_evaluate_problem(metric)
    if problem:
        raise LmevalError(f"metric {metric!r}: HF evaluate metric {problem}")
    return _hf_compute(metric)


def aggregation_function(aggregation: Any) -> Callable[[Sequence[Any]], Any]:
    """An aggregation by lm-eval's registered name, or a `!function` helper as given."""
    if callable(aggregation):
        return aggregation
    if aggregation not in registered_aggregations():
        raise LmevalError(f"unknown aggregation {aggregation!r}")
    return _registry().get_aggregation(aggregation)


def aggregate(values: Sequence[Any], aggregation: Any) -> float:
    """A task-level value from every document's value, by lm-eval's aggregation (tuples as
    lm-eval's items hold them: JSON records carry them as lists)."""
    items = [tuple(v) if isinstance(v, list) and len(v) == 2 else v for v in values]
    out = aggregation_function(aggregation)(items)
    return float(out) if isinstance(out, (int, float, np.generic)) else out


def registered_filter(name: str, helpers: Sequence[Any] = ()) -> Any:
    """lm-eval's filter class registered under `name` (its own filters, and those a task's
    helper module registers when imported: `helpers` are that task's `!function` references,
    imported first); None when lm-eval has none by that name."""
    if not installed():
        return None
    reg = _registry()
    if name not in _names(reg.FILTER_REGISTRY):
        import lm_eval.filters  # noqa: F401  (its own filters register on import)
    failed = []
    for ref in helpers:
        if name in _names(reg.FILTER_REGISTRY):
            break
        load = getattr(ref, "load", None)
        if load is not None:
            try:
                load()
            except Exception as exc:  # e.g. the helper's own packages are not installed
                failed.append(f"{ref!r}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}")
    if name in _names(reg.FILTER_REGISTRY):
        return reg.get_filter(name)
    if failed:
        raise LmevalError(f"filter function {name!r} would be registered by the task's helpers, which do not import "
                          f"({failed[0]})")  # fmt: skip
    return None


# lm-eval's evaluator bootstraps these aggregations' stderr with min(bootstrap_iters, 100) resamples.
_BOOTSTRAP_100 = ("bleu", "chrf", "chrf++", "ter")


def aggregate_with_stderr(values: Sequence[Any], aggregation: Any) -> tuple[float, float | str]:
    """The task-level value and its stderr as lm-eval's evaluator reports them: bleu, chrf and
    ter bootstrapped over 100 resamples by lm-eval's own resampler (seeded, so the same numbers);
    'N/A' for the others (lm-eval bootstraps f1 and mcc over 100,000 resamples: not done here)."""
    value = aggregate(values, aggregation)
    if callable(aggregation) or aggregation not in _BOOTSTRAP_100:
        return value, "N/A"
    from lm_eval.api.metrics import _bootstrap_internal, sample_stddev

    items = [tuple(v) if isinstance(v, list) and len(v) == 2 else v for v in values]
    replicates = _bootstrap_internal(aggregation_function(aggregation), 100)((0, items))
    return value, float(sample_stddev(replicates))


# -- per document -----------------------------------------------------------------------------
def choice_values(wanted: Sequence[str], gold: Any, lls: Sequence[float]) -> dict[str, Any]:
    """lm-eval's multiple_choice values for f1, mcc (gold, prediction) and brier_score (gold,
    softmax of the log-likelihoods)."""
    pred = int(np.argmax(np.asarray(lls, dtype=np.float64)))
    out: dict[str, Any] = {}
    if "f1" in wanted:
        out["f1"] = (gold, pred)
    if "mcc" in wanted:
        out["mcc"] = (gold, pred)
    if "brier_score" in wanted:
        from lm_eval import utils

        out["brier_score"] = (gold, [float(p) for p in utils.softmax(np.asarray(lls, dtype=np.float64))])
    return out


def _call(fn: Callable[..., Any], gold: Any, result: Any, kwargs: dict[str, Any]) -> Any:
    """lm-eval's calling convention: the HF evaluate form first, the items form on TypeError."""
    try:
        return fn(references=[gold], predictions=[result], **kwargs)
    except TypeError:
        return fn([gold, result])


def generation_values(
    metric: str, fn: Callable[..., Any], kwargs: dict[str, Any], gold: Any, result: Any
) -> dict[str, Any]:
    """One metric of lm-eval's generate_until process_results for one document: several right
    answers (a list gold) score 1 when any does; a metric returning a dict gives each key."""
    if isinstance(gold, list):
        scores = []
        for option in gold:
            value = _call(fn, option, result, kwargs)
            scores.append(value[metric] if isinstance(value, dict) else value)
        return {metric: 1.0 if any(scores) else 0.0}
    value = _call(fn, gold, result, kwargs)
    if isinstance(value, dict):
        return dict(value)
    return {metric: value}


def cast_gold(gold: Any, result: Any, metric_names: Sequence[str], has_choices: bool) -> Any:
    """lm-eval's generate_until: a gold that is not a list is cast to the answer's type, unless
    a metric is `bypass` or the answer is a list."""
    if has_choices or isinstance(gold, list):
        return gold
    if type(gold) is not type(result) and not ("bypass" in metric_names or isinstance(result, list)):
        return type(result)(gold)
    return gold
