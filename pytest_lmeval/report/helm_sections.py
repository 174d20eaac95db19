"""report.html's sections for HELM's measures of generated text, from results.json: bias
(`bias`: per generative task its representation and stereotype measures with the group counts)
and toxicity (`toxicity`: per generative task the fraction of generations the classifier flags).

`helm_sections(doc)` takes results.json's document and returns HTML fragments, one per measure
the run has, rendered from templates/helm_sections.html.j2 by the pages' one environment (its
escaping, the report's `summary` tables and `num` cells); the page that includes them places
them."""

from __future__ import annotations

from typing import Any

from ..features import bias, toxicity
from .page_templates import PAGES

_BIAS_MEASURES = [f"representation_{c}" for c in bias.GROUPS] + [
    f"stereotypes_{c}_{t}" for c in bias.GROUPS for t in bias.TARGETS
]


def helm_sections(doc: dict[str, Any]) -> list[str]:
    """HTML fragments for the run's HELM measures of generated text (none when it has none)."""
    page = PAGES.get_template("helm_sections.html.j2")
    out = []
    if doc.get(bias.KEY):
        out.append(page.render(section="bias", figures=doc[bias.KEY], note=bias.NOTE, measures=_BIAS_MEASURES))
    if doc.get(toxicity.KEY):
        figures = doc[toxicity.KEY]
        model = next((f["model"] for f in reversed(list(figures.values())) if f.get("model")), "")
        out.append(
            page.render(section="toxicity", figures=figures, note=toxicity.note(model), shown=toxicity.MAX_SHOWN)
        )
    return out
