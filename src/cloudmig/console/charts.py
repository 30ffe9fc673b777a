"""Server-side SVG: the replication lag chart (no JavaScript library, no inline style: CSP-safe)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from markupsafe import Markup, escape

from cloudmig.console.fmt import human_bytes
from cloudmig.console.history import Point

# Drawn at about the width of a task page's card, so that it fills the card at a readable scale.
WIDTH, HEIGHT = 1000, 220
LEFT, RIGHT, TOP, BOTTOM = 70, 10, 12, 26


def _nice_max(value: float) -> float:
    """A round top for the y axis in binary units: 1, 2, 5, 10, 20, 50... KiB/MiB/GiB."""
    if value <= 0:
        return 1024.0
    unit = 1.0
    while value / unit >= 1000:
        unit *= 1024
    for m in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1024):
        if m * unit >= value:
            return float(m * unit)
    return float(1024 * unit)


def lag_chart(points: Sequence[Point]) -> Markup:
    """An SVG line chart of lag bytes over time; a placeholder text when there are no points yet."""
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" role="img" aria-label="replication lag over time" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="{LEFT}" y="{TOP}" width="{w}" height="{h}" class="plot"/>',
    ]
    if len(points) < 2:
        parts.append(
            f'<text x="{LEFT + w / 2}" y="{TOP + h / 2}" text-anchor="middle" class="muted">'
            "waiting for replication samples…</text></svg>"
        )
        return Markup("".join(parts))  # noqa: S704  (built from numbers and fixed text only)
    t0, t1 = points[0].at, points[-1].at
    span = max(t1 - t0, 1e-6)
    top = _nice_max(max(p.lag_bytes for p in points))
    for frac in (0.0, 0.5, 1.0):
        y = TOP + h - frac * h
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + w}" y2="{y:.1f}" class="grid"/>')
        label = str(escape(human_bytes(top * frac)))
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">{label}</text>')
    coords = " ".join(
        f"{LEFT + (p.at - t0) / span * w:.1f},{TOP + h - min(p.lag_bytes / top, 1.0) * h:.1f}" for p in points
    )
    parts.append(f'<polyline points="{coords}" class="line"/>')
    for x, t, anchor in ((LEFT, t0, "start"), (LEFT + w, t1, "end")):
        label = datetime.fromtimestamp(t).strftime("%H:%M:%S")
        parts.append(f'<text x="{x}" y="{HEIGHT - 8}" text-anchor="{anchor}" class="axis">{label}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (numbers, fixed text and escaped labels only)
