"""Durations and timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from authproxy.times import (
    format_timestamp,
    parse_duration,
    parse_timestamp,
    parse_when,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("90", 90),
        ("1.5", 1.5),
        ("250ms", 0.25),
        ("15m", 900),
        ("1h30m", 5400),
        ("7d", 604800),
        ("2w", 1209600),
        (" 24h ", 86400),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    """Durations accept bare seconds and ms/s/m/h/d/w units, combined."""
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "h", "5x", "-5", "5m-", "m5", "1h 30m"])
def test_bad_durations(text: str) -> None:
    """Anything else is a ValueError."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_timestamps() -> None:
    """RFC 3339 with Z or an offset, or naive (taken as UTC), round-trip as Z."""
    assert parse_timestamp("2026-12-31T00:00:00Z") == datetime(2026, 12, 31, tzinfo=UTC)
    assert parse_timestamp("2026-12-31T02:00:00+02:00") == datetime(
        2026, 12, 31, tzinfo=UTC
    )
    assert parse_timestamp("2026-12-31") == datetime(2026, 12, 31, tzinfo=UTC)
    assert format_timestamp(NOW) == "2026-11-22T12:00:00Z"


def test_when() -> None:
    """parse_when takes a duration from now or an absolute time."""
    assert parse_when("30d", NOW) == NOW + timedelta(days=30)
    assert parse_when("2027-01-01T00:00:00Z", NOW) == datetime(2027, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="invalid time 'later'"):
        parse_when("later", NOW)
