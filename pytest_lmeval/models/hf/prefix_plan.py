"""Planning shared-prefix reuse: which token prefixes to compute once and reuse.

Model inputs are sorted as token tuples, so inputs sharing a prefix sit next to each other; a
tree is built where each node holds the tokens its inputs share beyond its parent's. A node's
tokens are run once (its KV cache extends the parent's), its leaves are scored in batches on
top of that cache, and its children recurse. Two levels cover the common cases: a subject's
few-shot block shared by all its questions (MMLU 5-shot), and one question's context shared by
all its answer choices (ARC, HellaSwag). A prefix never covers a position that is scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Row = tuple[int, ...]

MIN_SHARED = 16  # tokens: a shorter common prefix is not worth a node


@dataclass
class Node:
    start: int  # tokens [0, start) are cached by the ancestors
    end: int  # this node caches tokens [start, end) of its rows
    leaves: list[Row] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)

    def rows(self) -> list[Row]:
        return self.leaves + [r for c in self.children for r in c.rows()]


def _lcp(a: Row, b: Row, limit: int) -> int:
    n = min(len(a), len(b), limit)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def plan(rows: list[Row], first_scored: dict[Row, int], min_saved: int, min_shared: int = MIN_SHARED) -> Node:
    """`first_scored[row]` is the first input position whose logits are scored; a cached
    prefix must end at or before it for every row under the node. Nodes that would save less
    than `min_saved` tokens (the device's Tuning.pass_cost) are dissolved into their parent's
    leaves, so their rows still batch with everything else."""
    ordered = sorted(rows)
    return _build(ordered, 0, first_scored, min_shared, min_saved)


def _build(rows: list[Row], start: int, first_scored: dict[Row, int], min_shared: int, min_saved: int) -> Node:
    cap = min(first_scored[r] for r in rows)
    end = _lcp(rows[0], rows[-1], cap) if len(rows) > 1 else start
    end = max(end, start)
    node = Node(start, end)
    i = 0
    while i < len(rows):
        j = i + 1
        while j < len(rows) and _lcp(rows[i], rows[j], first_scored[rows[i]]) >= end + min_shared:
            j += 1
        run = rows[i:j]
        shared = _lcp(run[0], run[-1], min(first_scored[r] for r in run)) if len(run) > 1 else 0
        if len(run) > 1 and shared >= end + min_shared:
            child = _build(run, end, first_scored, min_shared, min_saved)
            if (len(run) - 1) * (child.end - child.start) >= min_saved:
                node.children.append(child)
            else:
                node.leaves.extend(child.rows())
        else:
            node.leaves.extend(run)
        i = j
    return node


def generation_prefixes(
    rows: list[Row], min_saved: int, min_shared: int = MIN_SHARED, min_saved_whole: int | None = None
) -> list[tuple[int, int]]:
    """(prefix length, group) for each generation prompt: prompts sorted as token tuples fall
    into groups whose common prefix is at least `min_shared` tokens (a task's few-shot block);
    a group's prefix is run once and seeds all its rows. It stops one token short of the
    shortest prompt of the group (that token's logits give the first generated token). Groups
    saving less than `min_saved` tokens, (rows - 1) x prefix, get prefix 0; a group holding
    every prompt needs only `min_saved_whole` (it keeps no other rows out of its passes). Every
    group has its own number, even a lone prompt."""
    order = sorted(range(len(rows)), key=lambda i: rows[i])
    out: list[tuple[int, int]] = [(0, 0)] * len(rows)
    group = 0
    start = 0
    while start < len(order):
        first = rows[order[start]]
        end = start + 1
        while end < len(order) and _lcp(first, rows[order[end]], len(first)) >= min_shared:
            end += 1
        members = order[start:end]
        shortest = min(len(rows[i]) for i in members)
        shared = _lcp(first, rows[order[end - 1]], shortest - 1) if len(members) > 1 else 0
        needed = min_saved_whole if min_saved_whole is not None and len(members) == len(rows) else min_saved
        if (len(members) - 1) * shared < needed or shared < min_shared:
            shared = 0
        for i in members:
            out[i] = (shared, group)
        group += 1
        start = end
    return out
