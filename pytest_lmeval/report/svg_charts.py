"""The charts of the HTML pages, drawn as inline SVG.

They are written by hand rather than with a plotting library so that a page needs nothing when
it is viewed (no script, no network) and the project needs nothing more when it is installed.
Colours and fonts come from the page's stylesheet (_style.html.j2), not from here.
"""

from __future__ import annotations

import html
from typing import Any

_PALETTE = 6  # colour classes s0..s5 in _style.html.j2


def _svg_open(title: str, width: float, height: float) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{html.escape(title)}">'
        f'<text x="0" y="14" class="title">{html.escape(title)}</text>'
    )


def _title_width(title: str) -> float:
    """About how wide a chart's bold 13px title draws: a small chart is made at least as wide,
    so its title is not cut off ("mmlu_anatomy: reliability (ECE-10 0.2102)")."""
    return 7.5 * len(title) + 8


Bar = tuple[str, float, "float | None", "int | None"]  # name, value, stderr, documents


def bar_chart(title: str, bars: list[Bar], scale: float | None = None) -> str:
    """A horizontal bar chart as inline SVG (one bar per subtask), each bar with its 95%
    interval (value +- 1.96 stderr) when it has a stderr: a 10-document subject at 0.30 is
    not the same news as a 1,000-document one."""
    if not bars:
        return ""
    top = scale or max(1e-9, max(v for _, v, _, _ in bars))
    row, label_w, bar_w = 18, 260, 420
    x = lambda v: label_w + max(0.0, min(1.0, v / top)) * bar_w  # noqa: E731
    parts = [_svg_open(title, label_w + bar_w + 170, row * len(bars) + 30)]
    for i, (name, value, stderr, n) in enumerate(bars):
        y = 24 + i * row
        width = x(value) - label_w
        parts.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">{html.escape(name)}</text>')
        parts.append(f'<rect class="bar" x="{label_w}" y="{y + 2}" width="{width:.1f}" height="{row - 4}"/>')
        label = f"{value:.4f}"
        end = x(value)
        if isinstance(stderr, (int, float)):
            half = 1.96 * stderr
            lo, hi = x(value - half), x(value + half)
            parts.append(
                f'<line class="ci" x1="{lo:.1f}" y1="{y + row / 2:.1f}" x2="{hi:.1f}" y2="{y + row / 2:.1f}">'
                f"<title>95% interval [{value - half:.4f}, {value + half:.4f}]</title></line>"
            )
            label += f" \u00b1{half:.3f}"
            end = max(end, hi)
        if n is not None:
            label += f" (n={n})"
        parts.append(f'<text x="{end + 4:.1f}" y="{y + 12}">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def interval_chart(title: str, rows: list[tuple[str, float, float, float, bool]], unit: str) -> str:
    """Differences with their intervals (a forest plot): one row per task or group, a line for
    the interval, a dot for the difference, the zero line for "no change"; failed gates red."""
    if not rows:
        return ""
    lo = min(0.0, *(r[2] for r in rows))
    hi = max(0.0, *(r[3] for r in rows))
    hi = hi if hi > lo else lo + 1.0
    row, label_w, plot_w, top = 18, 260, 420, 40
    x = lambda v: label_w + (v - lo) / (hi - lo) * plot_w  # noqa: E731
    height = top + row * len(rows) + 10
    parts = [_svg_open(title, label_w + plot_w + 150, height)]
    parts.append(f'<text x="{x(lo):.1f}" y="32" text-anchor="start">{lo:+.2f}</text>')
    parts.append(f'<text x="{x(hi):.1f}" y="32" text-anchor="end">{hi:+.2f} {html.escape(unit)}</text>')
    parts.append(f'<line class="zero" x1="{x(0):.1f}" y1="{top - 4}" x2="{x(0):.1f}" y2="{height - 6}"/>')
    for i, (name, diff, low, high, failed) in enumerate(rows):
        y = top + i * row + row / 2
        cls = "ci fail" if failed else "ci"
        parts.append(f'<text x="{label_w - 6}" y="{y + 4:.1f}" text-anchor="end">{html.escape(name)}</text>')
        parts.append(f'<line class="{cls}" x1="{x(low):.1f}" y1="{y:.1f}" x2="{x(high):.1f}" y2="{y:.1f}"/>')
        parts.append(f'<circle class="{cls}" cx="{x(diff):.1f}" cy="{y:.1f}" r="3.5"/>')
        parts.append(f'<text x="{label_w + plot_w + 8}" y="{y + 4:.1f}">{diff:+.2f} [{low:+.2f}, {high:+.2f}]</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(title: str, labels: list[str], series: dict[str, list[float | None]]) -> str:
    """One metric across runs: a polyline per task or group, with the value axis labelled."""
    values = [v for vs in series.values() for v in vs if v is not None]
    if not values or not labels:
        return ""
    w, h, pad, legend = 640, 260, 50, 16
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5 * max(abs(lo), 1e-3), hi + 0.5 * max(abs(hi), 1e-3)
    step = (w - 2 * pad) / max(1, len(labels) - 1)
    y = lambda v: h - pad - (v - lo) / (hi - lo) * (h - 2 * pad)  # noqa: E731
    x0 = pad if len(labels) > 1 else w / 2
    parts = [_svg_open(title, w + 260, max(h + 40, 40 + legend * len(series)))]
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(f'<line class="grid" x1="{pad}" y1="{y(v):.1f}" x2="{w - pad}" y2="{y(v):.1f}"/>')
        parts.append(f'<text x="{pad - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.4g}</text>')
    for i, label in enumerate(labels):
        parts.append(f'<text x="{x0 + i * step:.1f}" y="{h + 30}" text-anchor="middle">{html.escape(label)}</text>')
    for k, (name, vs) in enumerate(series.items()):
        pts = [(x0 + i * step, y(v)) for i, v in enumerate(vs) if v is not None]
        if not pts:
            continue
        cls = f"s{k % _PALETTE}"
        parts.append(f'<polyline class="line {cls}" points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in pts)}"/>')
        parts.extend(f'<circle class="{cls}" cx="{a:.1f}" cy="{b:.1f}" r="3"/>' for a, b in pts)
        parts.append(f'<text class="{cls}" x="{w + 10}" y="{30 + legend * k}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def reliability_chart(title: str, bins: list[Any]) -> str:
    """A reliability diagram: per equal-mass bin, mean confidence (x) against accuracy (y),
    a dot sized by the bin's documents; the diagonal is perfect calibration."""
    if not bins:
        return ""
    side, pad, top = 200, 34, 24
    total = sum(b.count for b in bins)
    x = lambda v: pad + v * side  # noqa: E731
    y = lambda v: top + (1 - v) * side  # noqa: E731
    width = max(side + pad + 20, _title_width(title))
    parts = [_svg_open(title, width, side + top + 34).replace('class="chart"', 'class="chart small"', 1)]
    parts.append(f'<rect class="frame" x="{pad}" y="{top}" width="{side}" height="{side}"/>')
    parts.append(f'<line class="zero" x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}"/>')
    for v in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{x(v):.1f}" y="{y(0) + 14:.1f}" text-anchor="middle">{v:g}</text>')
        parts.append(f'<text x="{pad - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    parts.append(f'<text x="{x(0.5):.1f}" y="{y(0) + 28:.1f}" text-anchor="middle">confidence</text>')
    points = " ".join(f"{x(b.confidence):.1f},{y(b.accuracy):.1f}" for b in bins)
    parts.append(f'<polyline class="line s0" points="{points}"/>')
    for b in bins:
        r = 2.5 + 6 * (b.count / total) ** 0.5
        parts.append(
            f'<circle class="bin" cx="{x(b.confidence):.1f}" cy="{y(b.accuracy):.1f}" r="{r:.1f}">'
            f"<title>{b.count} documents, confidence {b.low:.3f} to {b.high:.3f}: mean {b.confidence:.3f}, "
            f"accuracy {b.accuracy:.3f}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def latency_chart(title: str, seconds: list[float], bins: int = 12, axis: str = "seconds per request") -> str:
    """A histogram of the time per request, or of the time to first token (measurements of the
    run, not of the model)."""
    if not seconds:
        return ""
    top = max(seconds) or 1e-9
    counts = [0] * bins
    for s in seconds:
        counts[min(bins - 1, int(s / top * bins))] += 1
    w, h, pad, top_y = 260, 120, 34, 24
    most = max(counts)
    width = max(w + pad + 20, _title_width(title))
    parts = [_svg_open(title, width, h + top_y + 34).replace('class="chart"', 'class="chart small"', 1)]
    bar = w / bins
    for i, c in enumerate(counts):
        height = c / most * h
        x = pad + i * bar
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{top_y + h - height:.1f}" width="{bar - 1:.1f}" height="{height:.1f}">'
            f"<title>{c} requests, {i * top / bins:.4f} to {(i + 1) * top / bins:.4f} s</title></rect>"
        )
    parts.append(f'<text x="{pad}" y="{top_y + h + 14}" text-anchor="start">0</text>')
    parts.append(f'<text x="{pad + w}" y="{top_y + h + 14}" text-anchor="end">{top:.4f} s</text>')
    parts.append(f'<text x="{pad + w / 2}" y="{top_y + h + 28}" text-anchor="middle">{html.escape(axis)}</text>')
    parts.append(f'<text x="{pad - 4}" y="{top_y + 10}" text-anchor="end">{most}</text>')
    parts.append("</svg>")
    return "".join(parts)
