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

MIN_SHARED = 16  # tokens: below this, one more forward pass costs more than it saves


@dataclass
class Node:
    start: int  # tokens [0, start) are cached by the ancestors
    end: int  # this node caches tokens [start, end) of its rows
    leaves: list[Row] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)

    def rows(self) -> int:
        return len(self.leaves) + sum(c.rows() for c in self.children)


def _lcp(a: Row, b: Row, limit: int) -> int:
    n = min(len(a), len(b), limit)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def plan(rows: list[Row], first_scored: dict[Row, int], min_shared: int = MIN_SHARED) -> Node:
    """`first_scored[row]` is the first input position whose logits are scored; a cached
    prefix must end at or before it for every row under the node."""
    ordered = sorted(rows)
    return _build(ordered, 0, first_scored, min_shared)


def _build(rows: list[Row], start: int, first_scored: dict[Row, int], min_shared: int) -> Node:
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
            node.children.append(_build(run, end, first_scored, min_shared))
        else:
            node.leaves.extend(run)
        i = j
    return node
