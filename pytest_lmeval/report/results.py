"""results.json (lm-eval's schema) and samples/<task>.jsonl, written atomically."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..core.files import atomic_write
from ..engine.fingerprint import fingerprint_record
from ..scoring.aggregate import Results, derived_higher_is_better, split_key
from ..tasks.registry import Registry
from ..tasks.task import Task
from . import leaderboard


def _git_hash(cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("pytest-lmeval", "torch", "transformers", "accelerate", "datasets", "pytest"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def task_config(task: Task) -> dict[str, Any]:
    """The task's config as it ran: its n-shot, and its generation arguments with --gen-kwargs
    merged in (lm-eval shows them so)."""
    return {**task.config.to_record(), "num_fewshot": task.num_fewshot, **task.output.run_config(task)}


def _group_higher_is_better(group: str, results: Results, tasks: dict[str, Task], registry: Registry) -> dict:
    """A group's metrics point the way its tasks' do (up, for a metric no task defines)."""
    out: dict[str, bool] = {}
    for key in results.entries[group].values:
        metric = split_key(key)[0]
        hib = [tasks[t].config.higher_is_better().get(metric) for t in registry.leaves(group) if t in tasks]
        out[metric] = next((h for h in hib if h is not None), True)
    return derived_higher_is_better(results.entries[group].values, out)


def _model_fingerprint(run_config: dict[str, Any]) -> dict[str, Any] | None:
    """What the response cache keys answers by: the weights, tokenizer and code behind the numbers."""
    if run_config.get("model_fingerprint"):  # as the process that opened the cache keyed it
        return run_config["model_fingerprint"]
    args = run_config.get("model_args_parsed") or {}
    name = run_config.get("model_path") or run_config.get("model_name")  # model_name: as typed
    return fingerprint_record(run_config.get("model"), name, args)


def build_results(
    results: Results,
    tasks: dict[str, Task],
    registry: Registry,
    run_config: dict[str, Any],
    extra: dict[str, Any],
) -> dict[str, Any]:
    names = results.task_names
    groups = results.group_names
    doc = {
        "results": {n: e.to_json() for n, e in results.entries.items()},
        "groups": {n: results.entries[n].to_json() for n in groups},
        "group_subtasks": {
            **{g: results.group_subtasks[g] for g in reversed(groups)},
            **{t: [] for t in names},
        },
        "configs": {n: task_config(tasks[n]) for n in names},
        "versions": {
            **{n: tasks[n].config.version for n in names},
            **{g: registry.groups[g].version for g in groups},
        },
        "n-shot": {n: tasks[n].num_fewshot for n in names},
        "higher_is_better": {
            **{
                n: derived_higher_is_better(results.entries[n].values, tasks[n].config.higher_is_better())
                for n in names
            },
            **{g: _group_higher_is_better(g, results, tasks, registry) for g in groups},
        },
        "n-samples": {n: {"original": tasks[n].original_size, "effective": results.entries[n].n} for n in names},
        "config": {**run_config, "model_fingerprint": _model_fingerprint(run_config)},
        "git_hash": _git_hash(Path.cwd()),
        "pretty_env_info": f"{platform.platform()} / Python {sys.version.split()[0]}",
        "package_versions": _versions(),
        **extra,
    }
    board = leaderboard.scores(results, tasks)
    if board is not None:  # the Open LLM Leaderboard's normalized scores, beside lm-eval's raw ones
        doc["leaderboard"] = board
    return doc


def write_results(out_dir: Path, doc: dict[str, Any]) -> Path:
    path = out_dir / "results.json"
    atomic_write(path, json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")
    return path


# keys of a document's record that its sample lines repeat
SAMPLE_EXTRAS = ("confidence", "perturbation", "efficiency", "truncated")


def write_samples(out_dir: Path, records: list[dict[str, Any]]) -> list[Path]:
    """samples/<task>.jsonl: one line per document and filter, filter by filter and each in
    document order, as lm-eval writes them."""
    by_task: dict[str, list[tuple[int, int, dict[str, Any]]]] = defaultdict(list)
    for rec in records:
        extra = {k: rec[k] for k in SAMPLE_EXTRAS if k in rec}  # confidence, perturbation, timing
        # a perturbed document's lines go to samples/<task>.<perturbation>.jsonl
        name = f"{rec['task']}.{rec['perturbation']}" if rec.get("perturbation") else rec["task"]
        for position, sample in enumerate(rec.get("samples", ())):
            by_task[name].append((position, sample["doc_id"], {**sample, **extra}))
    paths = []
    for task, samples in by_task.items():
        samples.sort(key=lambda s: s[:2])
        text = "".join(json.dumps(s, ensure_ascii=False, default=str) + "\n" for _, _, s in samples)
        path = out_dir / "samples" / f"{task}.jsonl"
        atomic_write(path, text)
        paths.append(path)
    return paths
