"""Naming the documents whose correctness flipped between two scorings, and how to rerun them.

A gate that only says "accuracy dropped" leaves the user to find out where; listing the
documents that went from right to wrong (and back), with a -k expression selecting exactly
those items, turns a failed gate into something one can look at and rerun at once. Both the
baseline comparison and the perturbations list flips this way.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_RERUN_IDS = 500  # flipped documents named in one -k expression
MAX_NAMED = 10  # flipped documents named in a gate's detail line before "and N more"


def rerun_expression(ids: Iterable[str]) -> str:
    """Each id (`task-N`) is wrapped in brackets because -k matches substrings: the item's
    name ends `[mmlu_anatomy-12]`, while a bare `mmlu_anatomy-12` would also pick up
    mmlu_anatomy-120 to -129."""
    return " or ".join(f"[{i}]" for i in ids)


def name_some(ids: list[str], most: int = MAX_NAMED) -> str:
    """A detail line stays readable when hundreds flipped; results.json keeps every id."""
    return ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")


def flip_lines(lost: list[str], gained: list[str]) -> list[str]:
    """A gate's detail lines about its flipped documents; the -k line is left out when so many
    flipped that the expression would be longer than useful."""
    lines = []
    if lost:
        lines.append(f"right before, wrong now ({len(lost)}): {name_some(lost)}")
    if gained:
        lines.append(f"wrong before, right now ({len(gained)}): {name_some(gained)}")
    flipped = lost + gained
    if flipped and len(flipped) <= MAX_RERUN_IDS:
        lines.append(f'rerun the flipped documents: -k "{rerun_expression(flipped)}"')
    return lines
