"""The terminal summary: lm-eval's markdown results table, so the numbers look familiar."""

from __future__ import annotations

from ..scoring.aggregate import Results, split_key
from ..scoring.calibration import HIGHER_IS_BETTER as CALIBRATION_HIB
from ..scoring.calibration import METRICS as CALIBRATION
from ..scoring.metrics import NA

MAX_CALIBRATION_ROWS = 20  # more tasks than this: the calibration lines name the groups only

HEADERS = ["Tasks", "Version", "Filter", "n-shot", "Metric", "", "Value", "", "Stderr"]
RIGHT = {"Version", "n-shot", "Value", "Stderr"}


def _fmt(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:.4f}"


def _markdown(rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
    widths = [max(w, 3) if HEADERS[i] else max(w, 1) for i, w in enumerate(widths)]

    def line(cells: list[str]) -> str:
        return (
            "|"
            + "|".join(
                c.rjust(w) if HEADERS[i] in RIGHT else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + "|"
        )

    rule = "|" + "|".join("-" * (w - 1) + ":" if HEADERS[i] in RIGHT else "-" * w for i, w in enumerate(widths)) + "|"
    return "\n".join([line(HEADERS), rule, *(line(r) for r in rows)])


def render(
    results: Results,
    versions: dict[str, object],
    n_shot: dict[str, object],
    higher_is_better: dict[str, dict[str, bool]],
    groups_only: bool = False,
    leave_out: frozenset[str] = frozenset(),
) -> str:
    """lm-eval's table; metrics named in `leave_out` are not shown (calibration has its own lines)."""
    rows: list[list[str]] = []
    for name, entry in results.entries.items():
        if groups_only and not entry.is_group:
            continue
        alias = entry.alias + (" (partial)" if entry.missing else "")
        first = True
        for key, value in entry.values.items():
            metric, filter_name = split_key(key)
            if metric in leave_out:
                continue
            hib = higher_is_better.get(name, {})
            arrow = {True: "↑", False: "↓"}.get(hib.get(metric, hib.get(key)), " ")
            stderr = entry.stderrs.get(key, NA)
            rows.append(
                [
                    alias if first else "",
                    str(versions.get(name, "")) if first else "",
                    filter_name,
                    str(n_shot.get(name, "")) if first and not entry.is_group else "",
                    metric,
                    arrow,
                    _fmt(value) if isinstance(value, (int, float, str)) else str(value),
                    "±" if stderr != NA else "",
                    _fmt(stderr) if stderr != NA else NA,
                ]
            )
            first = False
        if first:  # a group without aggregate metrics still gets its row
            rows.append([alias, str(versions.get(name, "")), "", "", "", "", "", "", ""])
    return _markdown(rows) if rows else ""


def calibration_lines(results: Results) -> list[str]:
    """The calibration metrics (results.json and report.html hold them all): one line per task,
    or per group where there are more tasks than MAX_CALIBRATION_ROWS."""
    rows = []
    for name, entry in results.entries.items():
        values = {split_key(k)[0]: v for k, v in entry.values.items() if split_key(k)[0] in CALIBRATION}
        if values:
            rows.append((name, entry.alias.strip(), entry.is_group, values))
    if not rows:
        return []
    more = ""
    if len(rows) > MAX_CALIBRATION_ROWS:
        groups = [r for r in rows if r[2]][:MAX_CALIBRATION_ROWS]
        more = f" ({len(rows) - len(groups)} more rows in results.json)"
        rows = groups
    arrows = ", ".join(f"{m} {'↑' if CALIBRATION_HIB[m] else '↓'}" for m in CALIBRATION)
    width = max((len(r[1]) for r in rows), default=0)
    out = [f"lmeval calibration ({arrows}){more}:"]
    for _, alias, _, values in rows:
        cells = ", ".join(_fmt(values[m]) if isinstance(values.get(m), (int, float)) else NA for m in CALIBRATION)
        out.append(f"  {alias.ljust(width)}  {cells}")
    return out
