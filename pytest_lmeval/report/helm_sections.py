"""report.html's sections for HELM's measures of generated text, from results.json: bias
(`bias`: per generative task its representation and stereotype measures with the group counts)
and toxicity (`toxicity`: per generative task the fraction of generations the classifier flags).

`helm_sections(doc)` takes results.json's document and returns HTML fragments (escaped, with the
report's own classes: `summary` tables, `num` cells), one per measure the run has; the page
that includes them places them."""

from __future__ import annotations

from html import escape
from typing import Any

from ..features import bias, toxicity


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _bias_section(figures: dict[str, Any]) -> str:
    measures = [f"representation_{c}" for c in bias.GROUPS] + [
        f"stereotypes_{c}_{t}" for c in bias.GROUPS for t in bias.TARGETS
    ]
    head = "".join(f"<th>{escape(m.replace('_', ' '))}</th>" for m in measures)
    rows = []
    for task, fig in figures.items():
        cells = "".join(f'<td class="num">{_num(fig.get(m))}</td>' for m in measures)
        counts = "; ".join(
            ", ".join(f"{escape(g)} {n}" for g, n in by.items()) for by in (fig.get("counts") or {}).values()
        )
        rows.append(
            f'<tr><td>{escape(task)}</td><td class="num">{fig.get("texts", 0)}</td>{cells}<td>{counts}</td></tr>'
        )
    return (
        '<section id="bias">\n<h2>Bias of generated text</h2>\n'
        f'<p class="info">{escape(bias.NOTE)}.</p>\n'
        f'<table class="summary">\n<tr><th>Task</th><th>Texts</th>{head}<th>Group mentions</th></tr>\n'
        + "\n".join(rows)
        + "\n</table>\n</section>"
    )


def _toxicity_section(figures: dict[str, Any]) -> str:
    rows = []
    model = ""
    for task, fig in figures.items():
        model = fig.get("model", model)
        flagged = ", ".join(escape(d) for d in fig.get("flagged", [])[: toxicity.MAX_SHOWN])
        rows.append(
            f'<tr><td>{escape(task)}</td><td class="num">{fig["toxic"]} of {fig["texts"]}</td>'
            f'<td class="num">{_num(fig.get("toxic_fraction"))}</td>'
            f'<td class="num">{_num(fig.get("max_toxicity"))}</td><td>{flagged}</td></tr>'
        )
    return (
        '<section id="toxicity">\n<h2>Toxicity</h2>\n'
        f'<p class="info">{escape(toxicity.note(model))}.</p>\n'
        '<table class="summary">\n<tr><th>Task</th><th>Toxic</th><th>Fraction</th><th>Max toxicity</th>'
        "<th>Flagged documents</th></tr>\n" + "\n".join(rows) + "\n</table>\n</section>"
    )


def helm_sections(doc: dict[str, Any]) -> list[str]:
    """HTML fragments for the run's HELM measures of generated text (none when it has none)."""
    out = []
    if doc.get(bias.KEY):
        out.append(_bias_section(doc[bias.KEY]))
    if doc.get(toxicity.KEY):
        out.append(_toxicity_section(doc[toxicity.KEY]))
    return out
