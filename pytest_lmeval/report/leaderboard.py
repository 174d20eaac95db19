"""The Open LLM Leaderboard v2's normalized scores, next to lm-eval's raw numbers.

The leaderboard runs lm-eval's `leaderboard` group and then, at its results-parsing stage (not
in lm-eval), rescales each benchmark so that random guessing scores 0 and a perfect score 100
(its documentation, "Scores Normalization"):

    normalized = 0 if raw < lower else (raw - lower) / (1 - lower) * 100

with `lower` the random baseline, 1 / number of choices. Per benchmark:

- BBH and MuSR: each subtask normalized with its own baseline, then the unweighted mean;
- GPQA (acc_norm, 4 choices) and MMLU-Pro (acc, 10 choices): the benchmark's raw score
  (GPQA's three subsets pooled by size, as lm-eval's group does) normalized once;
- MATH level 5 (exact_match) and IFEval (the mean of inst_level_strict_acc and
  prompt_level_strict_acc): generative, baseline 0, so raw x 100.

The leaderboard's average is the mean of the six normalized scores; with fewer benchmarks run
the average is over those, marked partial. Nothing here changes lm-eval's own numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..scoring.aggregate import Results

GROUP = "leaderboard"
DOCS = "https://huggingface.co/docs/leaderboards/open_llm_leaderboard/normalization"

# MuSR's baselines as the leaderboard documents them (the choices vary in number within a split).
MUSR_LOWER = {
    "leaderboard_musr_murder_mysteries": 1 / 2,
    "leaderboard_musr_object_placements": 1 / 5,
    "leaderboard_musr_team_allocation": 1 / 3,
}


@dataclass(frozen=True)
class Benchmark:
    name: str  # as the leaderboard shows it
    group: str  # lm-eval's task or group
    prefix: str  # its subtasks' names start with this
    metric: str  # the "metric,filter" key the leaderboard reads
    kind: str  # "subtasks": normalize each, average; "pooled": pool then normalize; "generative"


BENCHMARKS = (
    Benchmark("IFEval", "leaderboard_ifeval", "leaderboard_ifeval", "inst_level_strict_acc,none", "generative"),
    Benchmark("BBH", "leaderboard_bbh", "leaderboard_bbh_", "acc_norm,none", "subtasks"),
    Benchmark("MATH Lvl 5", "leaderboard_math_hard", "leaderboard_math_", "exact_match,none", "generative"),
    Benchmark("GPQA", "leaderboard_gpqa", "leaderboard_gpqa_", "acc_norm,none", "pooled"),
    Benchmark("MuSR", "leaderboard_musr", "leaderboard_musr_", "acc_norm,none", "subtasks"),
    Benchmark("MMLU-PRO", "leaderboard_mmlu_pro", "leaderboard_mmlu_pro", "acc,none", "pooled"),
)
IFEVAL_KEYS = ("inst_level_strict_acc,none", "prompt_level_strict_acc,none")


def normalize(raw: float, lower: float) -> float:
    """The leaderboard's normalize_within_range(raw, lower, 1) x 100, floored at 0."""
    if raw < lower:
        return 0.0
    return (raw - lower) / (1.0 - lower) * 100.0


def _choices(task: Any) -> int | None:
    """How many answers a multiple-choice subtask offers (its first document's)."""
    if task is None or not task.docs or task.config.doc_to_choice is None:
        return None
    return len(task.field("doc_to_choice", task.config.doc_to_choice, 0))


def _lower(bench: Benchmark, name: str, task: Any) -> float:
    if bench.kind == "generative":
        return 0.0
    if name in MUSR_LOWER:
        return MUSR_LOWER[name]
    if bench.group == "leaderboard_gpqa":
        return 0.25
    if bench.group == "leaderboard_mmlu_pro":
        return 0.1
    n = _choices(task)
    return 1.0 / n if n else 0.0


def _raw(entry: Any, bench: Benchmark) -> float | None:
    if bench.group == "leaderboard_ifeval":
        if not all(k in entry.values for k in IFEVAL_KEYS):
            return None
        return sum(float(entry.values[k]) for k in IFEVAL_KEYS) / len(IFEVAL_KEYS)
    value = entry.values.get(bench.metric)
    return None if value is None else float(value)


def _members(bench: Benchmark, results: Results) -> list[str]:
    out = []
    for name in results.task_names:
        if name == bench.group or (name.startswith(bench.prefix) and name != bench.group):
            out.append(name)
    return out


def scores(results: Results, tasks: dict[str, Any]) -> dict[str, Any] | None:
    """Each leaderboard benchmark the run scored: raw (lm-eval's number, 0-1), normalized
    (0-100), per subtask too; and the average of the normalized scores. None when the run has
    none of the six."""
    benchmarks: dict[str, Any] = {}
    for bench in BENCHMARKS:
        subtasks: dict[str, Any] = {}
        sizes: list[int] = []
        for name in _members(bench, results):
            entry = results.entries[name]
            raw = _raw(entry, bench)
            if raw is None:
                continue
            lower = _lower(bench, name, tasks.get(name))
            subtasks[name] = {"raw": raw, "lower_bound": lower, "normalized": normalize(raw, lower), "n": entry.n}
            sizes.append(entry.n)
        if not subtasks:
            continue
        pooled = sum(s["raw"] * s["n"] for s in subtasks.values()) / sum(sizes)  # lm-eval's group value
        if bench.kind == "subtasks":
            normalized = sum(s["normalized"] for s in subtasks.values()) / len(subtasks)
        else:
            normalized = normalize(pooled, next(iter(subtasks.values()))["lower_bound"])
        metric = "mean of inst_level_strict_acc and prompt_level_strict_acc" if bench.group.endswith("ifeval") else None
        benchmarks[bench.group] = {
            "name": bench.name,
            "metric": metric or bench.metric,
            "raw": pooled,
            "normalized": normalized,
            "subtasks": subtasks,
        }
    if not benchmarks:
        return None
    average = sum(b["normalized"] for b in benchmarks.values()) / len(benchmarks)
    return {
        "benchmarks": benchmarks,
        "average": average,
        "complete": len(benchmarks) == len(BENCHMARKS),
        "method": f"Open LLM Leaderboard v2 random-baseline normalization ({DOCS})",
    }


def lines(board: dict[str, Any] | None) -> list[str]:
    """The summary's leaderboard block: one line per benchmark and the average."""
    if not board:
        return []
    out = ["Open LLM Leaderboard v2 (raw: lm-eval's value; normalized: 0 = random baseline, 100 = perfect)"]
    out.append(f"  {'benchmark':<12} {'raw':>8} {'normalized':>11}  metric")
    for bench in board["benchmarks"].values():
        out.append(f"  {bench['name']:<12} {bench['raw']:>8.4f} {bench['normalized']:>11.2f}  {bench['metric']}")
    note = "" if board["complete"] else f" (partial: {len(board['benchmarks'])} of {len(BENCHMARKS)} benchmarks)"
    out.append(f"  {'average':<12} {'':>8} {board['average']:>11.2f}{note}")
    return out
