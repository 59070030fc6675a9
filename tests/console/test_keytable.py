"""console.keytable: the table's filter and sort, and the 30-day window."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from authproxy.console.keytable import KeyNumbers, filter_rows, sort_rows, window

ROWS: list[dict[str, Any]] = [
    {
        "id": "a1",
        "name": "Alice",
        "kind": "token",
        "status": "active",
        "note": None,
        "last_used": "2026-12-01T10:00:00Z",
        "requests_today": 3,
    },
    {
        "id": "b2",
        "name": "bob",
        "kind": "password",
        "status": "disabled",
        "note": "Team Blue",
        "last_used": None,
        "requests_today": 0,
    },
    {
        "id": "c3",
        "name": "carol",
        "kind": "ollama",
        "status": "revoked",
        "note": "",
        "last_used": "2026-12-02T09:00:00Z",
        "requests_today": 7,
    },
]


def ids(rows: list[dict[str, Any]]) -> list[str]:
    """The rows' ids in order."""
    return [r["id"] for r in rows]


def test_filters_combine() -> None:
    """Text (any case, name/id/note), status and kind; unknown values ignored."""
    assert ids(filter_rows(ROWS, {"q": "blue"})) == ["b2"]
    assert ids(filter_rows(ROWS, {"q": "C3"})) == ["c3"]
    assert ids(filter_rows(ROWS, {"status": "revoked"})) == ["c3"]
    assert ids(filter_rows(ROWS, {"status": "nonsense"})) == ["a1", "b2", "c3"]
    assert ids(filter_rows(ROWS, {"kind": "password", "q": "b"})) == ["b2"]
    assert ids(filter_rows(ROWS, {"kind": "nonsense"})) == ["a1", "b2", "c3"]


def test_sorting_ignores_case_and_puts_missing_values_last() -> None:
    """Names sort case-blind; a key never used is last both ways."""
    rows, column, order = sort_rows(list(ROWS), {"sort": "name", "order": "desc"})
    assert (ids(rows), column, order) == (["c3", "b2", "a1"], "name", "desc")
    assert ids(sort_rows(list(ROWS), {"sort": "last_used"})[0]) == ["a1", "c3", "b2"]
    desc = {"sort": "last_used", "order": "desc"}
    assert ids(sort_rows(list(ROWS), desc)[0]) == ["c3", "a1", "b2"]
    assert ids(sort_rows(list(ROWS), {"sort": "requests_today"})[0]) == [
        "b2",
        "a1",
        "c3",
    ]
    assert sort_rows(list(ROWS), {"sort": "drop table"})[1:] == ("name", "asc")


def test_the_window_is_30_utc_days_with_today() -> None:
    """From 29 days before today's UTC date, at midnight."""
    first, since = window(datetime(2026, 12, 2, 23, 30, tzinfo=UTC))
    assert first == date(2026, 11, 3)
    assert since == datetime(2026, 11, 3, tzinfo=UTC)


def test_numbers_sum_the_days() -> None:
    """today() is one day, total() all of them."""
    numbers = KeyNumbers({date(2026, 12, 1): (1, 10), date(2026, 12, 2): (2, 20)})
    assert numbers.today(date(2026, 12, 2)) == (2, 20)
    assert numbers.today(date(2026, 12, 3)) == (0, 0)
    assert numbers.total() == (3, 30)
