"""console.keychart: a bar per day, escaped text, and the same numbers as CSV."""

from __future__ import annotations

from datetime import date

from authproxy.console.keychart import (
    day_series,
    series_csv,
    stacked_chart,
    tokens_chart,
)
from tests.support.console import parse_html


def test_days_without_numbers_are_zero() -> None:
    """The series has every day of the window."""
    series = day_series({date(2026, 1, 2): (3, 30)}, date(2026, 1, 1), 3)
    assert series == [
        (date(2026, 1, 1), 0, 0),
        (date(2026, 1, 2), 3, 30),
        (date(2026, 1, 3), 0, 0),
    ]


def test_the_chart_scales_bars_to_the_peak_and_escapes_its_label() -> None:
    """The tallest bar fills the plot; an empty day has height 0; no raw markup."""
    series = day_series(
        {date(2026, 1, 2): (3, 30), date(2026, 1, 3): (1, 15)}, date(2026, 1, 1), 3
    )
    svg = str(tokens_chart(series, 'Tokens of <b>"x"</b>'))
    doc = parse_html(svg)
    bars = doc.find_all("rect", class_="bar")
    heights = [float(b.attrs["height"]) for b in bars]
    assert heights[0] == 0
    assert heights[1] == 2 * heights[2]
    assert "<b>" not in svg
    assert doc.find("svg").attrs["aria-label"] == 'Tokens of <b>"x"</b>'  # type: ignore[union-attr]
    assert "style" not in svg
    assert bars[1].find("title").text == "2026-01-02: 30 tokens, 3 requests"  # type: ignore[union-attr]


def test_an_all_zero_chart_draws_flat_bars() -> None:
    """No division by zero."""
    series = day_series({}, date(2026, 1, 1), 30)
    bars = parse_html(str(tokens_chart(series, "t"))).find_all("rect")
    assert len(bars) == 30
    assert {b.attrs["height"] for b in bars} == {"0"}


def test_csv_has_a_header_and_a_line_per_day() -> None:
    """day,requests,tokens with CRLF lines (RFC 4180)."""
    series = day_series({date(2026, 1, 1): (2, 9)}, date(2026, 1, 1), 2)
    assert (
        series_csv(series)
        == "day,requests,tokens\r\n2026-01-01,2,9\r\n2026-01-02,0,0\r\n"
    )


def test_a_stacked_bar_sums_its_series_and_escapes_names() -> None:
    """Each day's segments stack to the day's total; the tallest day fills the plot."""
    days = [date(2026, 1, 1), date(2026, 1, 2)]
    svg = str(stacked_chart(days, [("<a>", [10, 0]), ("b", [10, 5])], "T <x>"))
    assert "<a>" not in svg
    assert "<x>" not in svg
    doc = parse_html(svg)
    segments = doc.find_all("rect", class_="seg")
    assert [s.attrs["data-day"] for s in segments] == [
        "2026-01-01",
        "2026-01-01",
        "2026-01-02",
    ]
    heights = [float(s.attrs["height"]) for s in segments]
    assert heights[0] == heights[1] == 2 * heights[2]
    assert segments[0].attrs["fill"] != segments[1].attrs["fill"]
    # The stylesheet fills .bar with one colour, which beats a fill attribute.
    assert all("bar" not in s.attrs["class"].split() for s in segments)
    assert doc.find("title") is not None
