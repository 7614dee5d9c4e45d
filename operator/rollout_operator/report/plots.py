"""Small charts as inline SVG: histograms, bars and pass@k lines, with every label escaped.

Each chart is an `<svg class="plot" data-plot=NAME data-points=N>` (N: the values drawn), with
a `<title>` on every bar or point giving its exact figure. Colours come from the page's CSS
classes, so the charts follow its light or dark theme.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

WIDTH, HEIGHT = 380, 210
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 26, 36
BINS = 20


def _svg(name: str, title: str, points: int, body: list[str]) -> str:
    return (
        f'<svg class="plot" data-plot="{escape(name)}" data-points="{points}" role="img" '
        f'aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f'<text class="plot-title" x="{LEFT}" y="16">{escape(title)}</text>'
        + "".join(body) + "</svg>"
    )


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 10_000:
        return f"{value / 1000:.0f}k"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.3g}"


def _axes(x_low: str, x_high: str, y_high: str, x_label: str) -> list[str]:
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    return [
        f'<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/>',
        f'<text class="tick" x="{LEFT}" y="{bottom + 14}">{escape(x_low)}</text>',
        f'<text class="tick end" x="{right}" y="{bottom + 14}">{escape(x_high)}</text>',
        f'<text class="tick end" x="{LEFT - 4}" y="{TOP + 8}">{escape(y_high)}</text>',
        f'<text class="tick end" x="{LEFT - 4}" y="{bottom}">0</text>',
        f'<text class="label" x="{(LEFT + right) / 2:.0f}" y="{HEIGHT - 6}">'
        f"{escape(x_label)}</text>",
    ]


def empty(name: str, title: str, why: str) -> str:
    return _svg(name, title, 0, [
        f'<text class="empty" x="{WIDTH / 2:.0f}" y="{HEIGHT / 2:.0f}">{escape(why)}</text>'])


def histogram(name: str, title: str, values: Sequence[float], x_label: str,
              *, bins: int = BINS, low: float | None = None, high: float | None = None) -> str:
    """Counts of `values` in `bins` equal bins over [low, high] (default: their range)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return empty(name, title, "no values")
    lo = min(finite) if low is None else min(low, min(finite))
    hi = max(finite) if high is None else max(high, max(finite))
    if hi <= lo:
        hi = lo + 1.0
    counts = [0] * bins
    for value in finite:
        counts[min(bins - 1, int((value - lo) / (hi - lo) * bins))] += 1
    peak = max(counts)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / bins
    body = _axes(_number(lo), _number(hi), str(peak), x_label)
    for index, count in enumerate(counts):
        if not count:
            continue
        height = plot_h * count / peak
        start, end = lo + (hi - lo) * index / bins, lo + (hi - lo) * (index + 1) / bins
        body.append(
            f'<rect class="bar" x="{LEFT + index * step + 1:.1f}" '
            f'y="{TOP + plot_h - height:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{height:.1f}"><title>{escape(_number(start))} to '
            f"{escape(_number(end))}: {count}</title></rect>")
    return _svg(name, title, len(finite), body)


def bars(name: str, title: str, counts: Mapping[str, int], why_empty: str) -> str:
    """One horizontal bar per label, longest first."""
    shown = sorted(((n, label) for label, n in counts.items() if n > 0), key=lambda p: -p[0])
    if not shown:
        return empty(name, title, why_empty)
    shown = shown[:8]
    peak = shown[0][0]
    label_w = 110
    row_h = min(22.0, (HEIGHT - TOP - 10) / len(shown))
    body = []
    for index, (count, label) in enumerate(shown):
        y = TOP + index * row_h
        width = (WIDTH - label_w - RIGHT - 40) * count / peak
        body.append(
            f'<text class="tick end" x="{label_w - 6}" y="{y + row_h * 0.7:.1f}">'
            f"{escape(label[:18])}</text>"
            f'<rect class="bar fail" x="{label_w}" y="{y + 2:.1f}" width="{max(width, 1):.1f}" '
            f'height="{row_h - 4:.1f}"><title>{escape(label)}: {count}</title></rect>'
            f'<text class="tick" x="{label_w + width + 4:.1f}" y="{y + row_h * 0.7:.1f}">'
            f"{count}</text>")
    return _svg(name, title, sum(n for n, _ in shown), body)


def pass_at_k(name: str, title: str, series: Mapping[str, Mapping[int, float]]) -> str:
    """One line per scorer: pass@k (0 to 1) against k, the ks spaced evenly."""
    ks = sorted({k for points in series.values() for k in points})
    if len(ks) < 2:
        return empty(name, title, "needs more than one sample per row")
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    x_of = {k: LEFT + plot_w * i / (len(ks) - 1) for i, k in enumerate(ks)}
    body = _axes(f"k={ks[0]}", f"k={ks[-1]}", "1", "k (samples per row)")
    drawn = 0
    for index, (scorer, points) in enumerate(series.items()):
        coords = [(x_of[k], TOP + plot_h * (1 - v), k, v) for k, v in sorted(points.items())]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in coords)
        body.append(f'<polyline class="line s{index % 4}" points="{path}"/>')
        for x, y, k, v in coords:
            drawn += 1
            body.append(f'<circle class="dot s{index % 4}" cx="{x:.1f}" cy="{y:.1f}" r="3">'
                        f"<title>{escape(scorer)} pass@{k}: {v:.3f}</title></circle>")
    for k in ks[1:-1]:
        body.append(f'<text class="tick mid" x="{x_of[k]:.1f}" y="{HEIGHT - BOTTOM + 14}">'
                    f"{k}</text>")
    return _svg(name, title, drawn, body)
