"""The part of our report that goes into pytest-html's own page when a run passes --html.

That page has its own layout and stylesheet, so only the results table and the gates go in,
with our styles scoped under .lmeval where they cannot restyle the rest of it.
"""

from __future__ import annotations

from typing import Any

from .page_templates import PAGES, result_rows


def summary_fragment(state: Any) -> str:
    """Built from the run's results object: pytest-html's hook is handed the session, not the
    results.json document that report.html is rendered from."""
    gates = [g.to_json() for g in state.gates]
    return PAGES.get_template("fragment.html.j2").render(
        rows=result_rows({"results": {n: e.to_json() for n, e in state.results.entries.items()}}),
        gates=gates,
        failed=sum(1 for g in gates if not g["passed"]),
    )
