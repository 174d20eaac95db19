"""The Jinja2 environment every HTML page of the report is rendered with, and the rows of the
results table that report.html and pytest-html's fragment both include.

One environment for all pages, so that they share the partial templates (the results table,
the gates, the stylesheet) and escape every value the same way.
"""

from __future__ import annotations

from typing import Any

import jinja2

PAGES = jinja2.Environment(
    loader=jinja2.PackageLoader("pytest_lmeval.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


# calibration's measures: report.html shows them in its calibration section, not among the scores
CALIBRATION_METRICS = ("ece_10_bin", "selective_acc@10", "selective_cov_acc_area")


def result_rows(doc: dict[str, Any], calibration: bool = False) -> list[dict[str, Any]]:
    """One row per task or group and metric, from a results.json-shaped document, so both pages
    fill results_table.html.j2 from the same fields: the scores, or with `calibration` the
    calibration measures alone."""
    rows = []
    for name, entry in doc["results"].items():
        for key, value in entry.items():
            if "," in key and "_stderr" not in key:
                metric, _, filt = key.partition(",")
                if (metric in CALIBRATION_METRICS) != calibration:
                    continue
                stderr = entry.get(f"{metric}_stderr,{filt}")
                rows.append({
                    "name": name, "alias": entry.get("alias", name), "metric": metric, "filter": filt,
                    "value": value, "stderr": stderr, "partial": entry.get("partial", False),
                    "n_shot": doc.get("n-shot", {}).get(name, ""), "is_group": name in doc.get("groups", {}),
                })  # fmt: skip
    return rows
