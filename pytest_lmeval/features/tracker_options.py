"""The trackers' options (`--mlflow-args`, `--wandb-args`, `--hf-hub-log-args`), their `k=v,...`
values, the one line when a tracker's package is missing, and the run's figures as trackers
take them."""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest

from ..core.errors import LmevalError
from ..models.spec import parse_model_args

# option, dest (also the ini key), package imported, what it is called, help (the extra: the key)
MLFLOW_HELP = "log the run to MLflow: tracking_uri=...,experiment=...,run_name=..."
WANDB_HELP = "log the run to Weights & Biases: project=...,mode=offline,name=..."
HUB_HELP = "push results (and samples) to Hugging Face dataset repos: hub_results_org=...,details_repo_name=..."
TRACKERS = {
    "mlflow": ("--mlflow-args", "lmeval_mlflow_args", "mlflow", "MLflow", MLFLOW_HELP),
    "wandb": ("--wandb-args", "lmeval_wandb_args", "wandb", "W&B", WANDB_HELP),
    "hub": ("--hf-hub-log-args", "lmeval_hf_hub_log_args", "huggingface_hub", "huggingface_hub", HUB_HELP),
}


def add_tracker_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("lmeval")
    for flag, dest, _, _, help_text in TRACKERS.values():
        group.addoption(flag, dest=dest, default=None, help=help_text)
        parser.addini(dest, help_text, default=None)


def tracker_args(config: pytest.Config, tracker: str) -> dict[str, Any] | None:
    """The tracker's `k=v,...` as a dict, or None when the option is not given. The tracker's
    package must be importable: else one line naming the extra."""
    flag, dest, module, extra_name, _ = TRACKERS[tracker]
    text = config.getoption(dest) or config.getini(dest)
    if not text:
        return None
    try:
        importlib.import_module(module)
    except ImportError:
        raise LmevalError(f"{flag} needs {extra_name}: pip install 'pytest-lmeval[{tracker}]'") from None
    try:
        return parse_model_args(text)
    except LmevalError as exc:
        raise LmevalError(str(exc).replace("--model-args", flag, 1)) from None


_NOT_IN_KEY = re.compile(r"[^\w\-. :/]")


def metric_name(task: str, key: str) -> str:
    """`quiz_a` + `acc,none` -> `quiz_a/acc`; another filter: `gsm8k/exact_match/strict-match`.
    Only characters every tracker takes in a key (MLflow's rule)."""
    metric, _, filt = key.partition(",")
    name = f"{task}/{metric}" if filt in ("", "none") else f"{task}/{metric}/{filt}"
    return _NOT_IN_KEY.sub("_", name)


def run_metrics(result: Any) -> dict[str, float]:
    """Every task's and group's numeric metric and standard error, by `metric_name`."""
    out: dict[str, float] = {}
    for task, entry in result.results.entries.items():
        stderrs = {"{0}_stderr,{2}".format(*k.partition(",")): v for k, v in entry.stderrs.items()}
        for key, value in {**stderrs, **entry.values}.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
                out[metric_name(task, key)] = float(value)
    return out


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The run's configuration (already redacted) as flat string parameters."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = _NOT_IN_KEY.sub("_", f"{prefix}{key}")
        if isinstance(value, dict):
            out.update(flat_params(value, f"{name}."))
        elif value is not None:
            out[name] = str(value)[:500]
    return out


def sample_rows(result: Any) -> tuple[list[str], list[list[Any]]]:
    """One row per scored document: task, doc_id, each metric (columns in first-seen order)."""
    metrics: dict[str, None] = {}
    for record in result.records:
        metrics.update(dict.fromkeys(record.get("metrics", {})))
    columns = ["task", "doc_id", *metrics]
    rows = [
        [r["task"], r["doc_id"], *(r.get("metrics", {}).get(m) for m in metrics)]
        for r in sorted(result.records, key=lambda r: (r["task"], r["doc_id"]))
    ]
    return columns, rows


def say(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
