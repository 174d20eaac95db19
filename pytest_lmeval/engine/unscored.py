"""The documents a run selected but did not score, and why: the part of a run that failed.

A run that loses part of its documents (the backend gave up, an xdist worker was killed,
Ctrl-C, `-x`) still reports the documents it scored, marked partial, and lists the others by
id and reason. Documents whose scoring raised are already known from their items' reports
(`state.failures`); the others are gathered here:

- in the process that ran them (a plain run, or an xdist worker that sends its list to the
  controller): the documents whose answers the checks refused (answer_checks.py: the backend
  gave up on them, or never reached them, or they are NaN);
- on the xdist controller: the items a killed worker still had (distribute.ShardScheduling
  does not hand them to another worker) and the one it was running;
- at the end of a plain run: every selected document with neither a score nor an error
  (interrupted, or stopped early by `-x`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.requests import DocRequests, Request
from .answer_checks import unscorable

DocKey = tuple[str, int]
ERROR, NOT_RUN = "error", "not run"


@dataclass
class Unscored:
    """The run's documents without a score, and why (the run owns one: `Run.unscored`)."""

    docs: dict[DocKey, tuple[str, str]] = field(default_factory=dict)  # (task, doc_id) -> (status, reason)
    interrupted: bool = False  # Ctrl-C
    cached: int | None = None  # with Ctrl-C: how many of the run's answers the cache holds
    total: int | None = None  # with Ctrl-C: how many unique answers the run needs

    def add(self, key: DocKey | None, reason: str, status: str = NOT_RUN) -> None:
        if key is not None:
            self.docs.setdefault(key, (status, reason))


def doc_of_nodeid(nodeid: str) -> DocKey | None:
    """(task, doc_id) from an item's node id `path::test[task-3]`, as the controller of an
    xdist run knows items only by id."""
    if not nodeid.endswith("]") or "[" not in nodeid:
        return None
    task, sep, num = nodeid[nodeid.rindex("[") + 1 : -1].rpartition("-")
    return (task, int(num)) if sep and task and num.isdigit() else None


def refused(works: Iterable[DocRequests], answers: Mapping[Request, Any] | None) -> dict[DocKey, tuple[str, str]]:
    """The documents whose answers answer_checks refuses, as (status, reason)."""
    out: dict[DocKey, tuple[str, str]] = {}
    for work in works:
        why = unscorable(work.requests, answers or {})
        if why is not None:
            out[(work.task, work.doc_id)] = (NOT_RUN if why.not_run else ERROR, why.reason)
    return out


def entries(
    failures: list[dict[str, Any]], docs: Mapping[DocKey, tuple[str, str]], scored: Iterable[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """results.json's `not_scored`: each document by id, status (`error`: it ran and could not
    be scored; `not run`) and reason; the errors first, each group in document order. A
    document `scored` after all (an item xdist ran again elsewhere) is left out."""
    done = {(r["task"], r["doc_id"]) for r in scored}
    docs = {k: v for k, v in docs.items() if k not in done}
    out: dict[DocKey, dict[str, Any]] = {}
    for fail in failures:
        reason = str(fail.get("error", "")).removeprefix("NotScored: ").removeprefix("not scored: ")
        key = (fail["task"], fail["doc_id"])
        out[key] = {**fail, "id": f"{key[0]}-{key[1]}", "status": ERROR, "reason": reason}
    for (task, doc_id), (status, reason) in docs.items():
        if (task, doc_id) not in out:
            out[(task, doc_id)] = {"task": task, "doc_id": doc_id, "id": f"{task}-{doc_id}", "status": status}
            out[(task, doc_id)]["reason"] = reason
    return sorted(out.values(), key=lambda e: (e["status"] != ERROR, e["task"], e["doc_id"]))
