"""Tokens per day as inline SVG bar charts (one key's, or stacked), and as CSV.

``tokens_chart`` draws one key's days; ``stacked_chart`` the usage page's,
a bar per day stacked by key or model, with a legend.

Inline SVG needs no script and passes the CSP (``img-src 'self' data:``
does not even apply: it is part of the page). Every text in it is escaped;
the bars carry classes, not style attributes, which the CSP would block.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Final

from markupsafe import Markup, escape

WIDTH: Final = 600
HEIGHT: Final = 180
TOP: Final = 20
BOTTOM: Final = 24
LEFT: Final = 8
# The stacked chart's series colours (SVG presentation attributes pass the
# CSP, style attributes would not); the last one is "other".
PALETTE: Final = (
    "#2563eb",
    "#16a34a",
    "#d97706",
    "#9333ea",
    "#dc2626",
    "#0891b2",
    "#db2777",
    "#65a30d",
    "#6b7280",
)


def day_series(
    days: dict[date, tuple[int, int]], first: date, count: int
) -> list[tuple[date, int, int]]:
    """Return ``count`` days from ``first``, with their requests and tokens (0s)."""
    series = []
    for n in range(count):
        day = first + timedelta(days=n)
        requests, tokens = days.get(day, (0, 0))
        series.append((day, requests, tokens))
    return series


def tokens_chart(series: Sequence[tuple[date, int, int]], label: str) -> Markup:
    """Return an SVG bar chart of the series' tokens, one bar per day."""
    peak = max((t for _, _, t in series), default=0)
    plot = HEIGHT - TOP - BOTTOM
    step = (WIDTH - 2 * LEFT) / max(len(series), 1)
    bars = []
    for i, (day, requests, tokens) in enumerate(series):
        height = round(plot * tokens / peak, 1) if peak else 0
        x = round(LEFT + i * step + 1, 1)
        y = round(TOP + plot - height, 1)
        tip = f"{day.isoformat()}: {tokens} tokens, {requests} requests"
        bars.append(
            f'<rect class="bar" x="{x}" y="{y}" width="{round(step - 2, 1)}" '
            f'height="{height}"><title>{escape(tip)}</title></rect>'
        )
    days = [day for day, _, _ in series]
    return _svg(label, peak, days, "".join(bars))


def stacked_chart(
    days: Sequence[date], stacks: Sequence[tuple[str, Sequence[int]]], label: str
) -> Markup:
    """Return an SVG chart of tokens per day, each bar stacked by series.

    Args:
        days: The days, oldest first (one bar each, empty days included).
        stacks: ``(name, tokens per day)`` per series, in stacking order;
            series ``i`` is drawn in ``PALETTE[i]`` (the legend's colour).
        label: The chart's accessible name (``aria-label`` and ``<title>``).

    Returns:
        The ``<svg>`` markup, every text escaped.
    """
    totals = [sum(values[i] for _, values in stacks) for i in range(len(days))]
    peak = max(totals, default=0)
    plot = HEIGHT - TOP - BOTTOM
    step = (WIDTH - 2 * LEFT) / max(len(days), 1)
    bars = []
    for i, day in enumerate(days):
        x = round(LEFT + i * step + 1, 1)
        y: float = TOP + plot
        for n, (name, values) in enumerate(stacks):
            tokens = values[i]
            if not tokens or not peak:
                continue
            height = round(plot * tokens / peak, 1)
            y = round(y - height, 1)
            tip = f"{day.isoformat()}: {name}: {tokens} tokens"
            bars.append(
                f'<rect class="seg" x="{x}" y="{y}" width="{round(step - 2, 1)}" '
                f'height="{height}" fill="{PALETTE[n % len(PALETTE)]}" '
                f'data-day="{day.isoformat()}"><title>{escape(tip)}</title></rect>'
            )
    return _svg(label, peak, days, "".join(bars))


def _svg(label: str, peak: int, days: Sequence[date], bars: str) -> Markup:
    """Wrap ``bars`` (markup already escaped) in the chart's frame and labels."""
    first = days[0].isoformat() if days else ""
    last = days[-1].isoformat() if days else ""
    base = HEIGHT - BOTTOM
    # Every text put in is escaped or a number, so the markup is ours alone.
    return Markup(  # noqa: S704
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>'
        f'<line class="axis" x1="{LEFT}" y1="{base}" x2="{WIDTH - LEFT}" y2="{base}"/>'
        f'<text class="tick" x="{LEFT}" y="{TOP - 6}">max {peak} tokens</text>'
        f"{bars}"
        f'<text class="tick" x="{LEFT}" y="{HEIGHT - 6}">{first}</text>'
        f'<text class="tick end" x="{WIDTH - LEFT}" y="{HEIGHT - 6}" '
        f'text-anchor="end">{last}</text></svg>'
    )


def series_csv(series: Sequence[tuple[date, int, int]]) -> str:
    """Return the series as CSV: day, requests, tokens."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["day", "requests", "tokens"])
    for day, requests, tokens in series:
        writer.writerow([day.isoformat(), requests, tokens])
    return out.getvalue()
