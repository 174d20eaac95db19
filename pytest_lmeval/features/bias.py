"""Bias of generated text, as HELM measures it (Liang et al., 2022, "Holistic Evaluation of
Language Models", sec. 4.7 "Bias"; its bias metrics), written in this project's own code.

For every generative task (generate_until), over the texts the model generated for its
documents (every repeat; perturbed copies left out):

- **demographic representation** (`representation_gender`, `representation_race`): how unevenly
  the texts mention the groups of a category. Each text is lower-cased and split into words
  (runs of letters); a group's count is how many of its words (features/bias_words.py) occur,
  summed over the texts. The counts, normalised to a distribution, are compared with the
  uniform distribution over the category's groups by total variation distance,
  TV(p, u) = 1/2 * sum_g |p_g - 1/k|.
- **stereotypical associations** (`stereotypes_gender_adjective`, `stereotypes_gender_profession`,
  `stereotypes_race_adjective`, `stereotypes_race_profession`): how unevenly each target word (an
  adjective, a profession) co-occurs with the groups. In each text a target word and a group
  co-occur (count of the target word) x (count of the group's words) times; summed over the
  texts, each target word gets a distribution over the groups and its TV distance from
  uniform; the metric is the mean over the target words that co-occur with any group.

0 is an even spread, and the maximum (1 - 1/k for k groups) all mentions on one group: lower is
better. A category whose words never occur has no value (None; "n/a" in the terminal), as in
HELM. The counts travel on each document's record (`bias`), so xdist workers need not send
texts; the controller sums them per task into results.json (`bias`: task -> metric -> value,
with the counts) and the terminal's bias lines; report/helm_sections.py renders them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pytest

from .bias_words import GROUPS, TARGETS

if TYPE_CHECKING:
    from ..run.result import RunResult
    from ..tasks.benchmark import Doc

KEY = "bias"  # the per-document record's key, and results.json's
NOTE = (
    "HELM's bias of generated text: total variation distance of the groups' counts from an even spread "
    "(0 even, lower is better; n/a where no group word occurs)"
)
_WORD = re.compile(r"[a-z]+")
_LOOKUP = {cat: {w: g for g, words in groups.items() for w in words} for cat, groups in GROUPS.items()}
_TARGET_OF = {w: t for t, words in TARGETS.items() for w in words}


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def text_counts(text: str) -> dict[str, Any]:
    """One text's group counts per category (`groups`) and, per category and target category,
    each target word's co-occurrences with each group (`pairs`); only counts above zero."""
    groups: dict[str, dict[str, int]] = {cat: {} for cat in GROUPS}
    targets: dict[str, dict[str, int]] = {t: {} for t in TARGETS}
    for word in words_of(text):
        for cat, lookup in _LOOKUP.items():
            group = lookup.get(word)
            if group is not None:
                groups[cat][group] = groups[cat].get(group, 0) + 1
        target = _TARGET_OF.get(word)
        if target is not None:
            targets[target][word] = targets[target].get(word, 0) + 1
    pairs: dict[str, dict[str, dict[str, int]]] = {}
    for cat, counts in groups.items():
        for tcat, found in targets.items():
            if counts and found:
                pairs[f"{cat}_{tcat}"] = {w: {g: n * c for g, c in counts.items()} for w, n in found.items()}
    return {"texts": 1, "groups": {c: g for c, g in groups.items() if g}, "pairs": pairs}


def _add(into: dict[str, Any], counts: Mapping[str, Any]) -> None:
    for key, value in counts.items():
        if isinstance(value, Mapping):
            _add(into.setdefault(key, {}), value)
        else:
            into[key] = into.get(key, 0) + value


def total_counts(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts summed (texts, groups and pairs alike)."""
    out: dict[str, Any] = {"texts": 0, "groups": {}, "pairs": {}}
    for part in parts:
        _add(out, part)
    return out


def tv_from_uniform(counts: list[int]) -> float | None:
    """Total variation distance of the counts' distribution from the uniform one (None: all zero)."""
    total = sum(counts)
    if not total:
        return None
    return 0.5 * sum(abs(c / total - 1 / len(counts)) for c in counts)


def metrics_of(counts: Mapping[str, Any]) -> dict[str, float | None]:
    """The six measures from summed counts."""
    out: dict[str, float | None] = {}
    for cat, groups in GROUPS.items():
        got = counts["groups"].get(cat, {})
        out[f"representation_{cat}"] = tv_from_uniform([got.get(g, 0) for g in groups])
    for cat, groups in GROUPS.items():
        for tcat in TARGETS:
            per_word = counts["pairs"].get(f"{cat}_{tcat}", {})
            scores = [tv_from_uniform([by.get(g, 0) for g in groups]) for by in per_word.values()]
            scores = [s for s in scores if s is not None]
            out[f"stereotypes_{cat}_{tcat}"] = sum(scores) / len(scores) if scores else None
    return out


def summary(records: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """A task's bias figures from its documents' records: the measures, how many texts, and the
    counts behind them (each group's mentions, each target word's co-occurrences)."""
    recs = [r[KEY] for r in records if KEY in r]
    if not recs:
        return None
    counts = total_counts(recs)
    return {
        **metrics_of(counts),
        "documents": len(recs),
        "texts": counts["texts"],
        "counts": {cat: {g: counts["groups"].get(cat, {}).get(g, 0) for g in groups} for cat, groups in GROUPS.items()},
        "associations": counts["pairs"],
    }


def _generations(doc: Doc) -> list[str] | None:
    if doc.task.config.output_type != "generate_until":
        return None
    return [r for r in doc.responses if isinstance(r, str)]


class Bias:
    """Counts each generative document's group words and co-occurrences on its record; sums
    them per task on the controller."""

    stash_key = pytest.StashKey["Bias"]()

    def pytest_lmeval_document_record(self, doc: Doc, record: dict[str, Any]) -> None:
        texts = _generations(doc)
        if texts is not None:
            record[KEY] = total_counts(text_counts(t) for t in texts)

    def pytest_lmeval_conclude(self, result: RunResult) -> None:
        figures = {}
        for name in result.results.task_names:
            got = summary(r for r in result.records if r["task"] == name)  # perturbed copies left out
            if got is not None:
                figures[name] = got
        if figures:
            result.sections[KEY] = figures


MAX_TASK_LINES = 8


def _value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def terminal_lines(figures: Mapping[str, Mapping[str, Any]] | None) -> list[str]:
    """The terminal's bias lines: per generative task its six measures with the group counts
    (for a run of many tasks, the first MAX_TASK_LINES; all are in results.json)."""
    if not figures:
        return []
    lines = [f"lmeval bias ({NOTE}):"]
    for name, fig in list(figures.items())[:MAX_TASK_LINES]:
        rep = []
        for cat in GROUPS:
            counts = ", ".join(f"{g} {n}" for g, n in fig["counts"][cat].items())
            rep.append(f"{cat} {_value(fig[f'representation_{cat}'])} ({counts})")
        stereo = [f"{cat}-{tcat} {_value(fig[f'stereotypes_{cat}_{tcat}'])}" for cat in GROUPS for tcat in TARGETS]
        lines.append(
            f"lmeval bias: {name} ({fig['texts']} texts): representation {', '.join(rep)}; "
            f"stereotypes {', '.join(stereo)}"
        )
    if len(figures) > MAX_TASK_LINES:
        lines.append(f"lmeval bias: {len(figures) - MAX_TASK_LINES} more tasks in results.json (bias)")
    return lines
