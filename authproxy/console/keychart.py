"""A key's tokens per day as an inline SVG bar chart, and the same numbers as CSV.

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
    first = series[0][0].isoformat() if series else ""
    last = series[-1][0].isoformat() if series else ""
    base = TOP + plot
    # Every text put in is escaped or a number, so the markup is ours alone.
    return Markup(  # noqa: S704
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(label)}">'
        f'<line class="axis" x1="{LEFT}" y1="{base}" x2="{WIDTH - LEFT}" y2="{base}"/>'
        f'<text class="tick" x="{LEFT}" y="{TOP - 6}">max {peak} tokens</text>'
        f"{''.join(bars)}"
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
