"""times: durations like ``24h``, RFC 3339 stamps and the checks on both."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from authproxy.times import (
    MAX_DURATION,
    format_duration,
    format_timestamp,
    parse_duration,
    parse_timestamp,
    parse_when,
    seconds_to_duration,
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


@pytest.mark.parametrize(
    "text",
    [
        *("", "h", "5x", "-5", "5m-", "m5", "1h 30m"),
        *("inf", "-inf", "nan", "Infinity", "1e3", "1e400d", "1_000", "0x10"),
        "\u0663",  # ARABIC-INDIC DIGIT THREE, which float() takes
    ],
)
def test_bad_durations(text: str) -> None:
    """Anything else, float() spellings included, is a ValueError."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "text", ["36501d", "9999999999d", "5215w", "9" * 400, "1" * 5000 + "s"]
)
def test_durations_longer_than_100_years(text: str) -> None:
    """A duration past 100 years is a ValueError, not an OverflowError."""
    with pytest.raises(ValueError, match="too long") as info:
        parse_duration(text)
    assert len(str(info.value)) < 120
    assert parse_duration("36500d") == MAX_DURATION


@pytest.mark.parametrize(
    ("seconds", "error"),
    [
        (float("inf"), "too long"),
        (float("-inf"), "negative"),
        (float("nan"), "NaN"),
        (1e20, "too long"),
        (10**400, "too long"),
        (-1, "negative"),
    ],
)
def test_bad_seconds(seconds: float, error: str) -> None:
    """Numbers of seconds are checked the same way: no inf, NaN, negative or huge."""
    with pytest.raises(ValueError, match=error):
        seconds_to_duration(seconds)
    assert seconds_to_duration(90) == timedelta(seconds=90)
    assert seconds_to_duration(1.5) == timedelta(seconds=1.5)


@pytest.mark.parametrize(
    "text", ["9999-12-31T23:59:59-10:00", "0001-01-01T00:00:00+01:00"]
)
def test_timestamps_out_of_range(text: str) -> None:
    """A stamp that does not fit in UTC is a ValueError naming it."""
    with pytest.raises(ValueError, match=re.escape(f"time '{text}' is out of range")):
        parse_timestamp(text)
    with pytest.raises(ValueError, match="out of range"):
        parse_when(text, NOW)


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


def test_when_ago() -> None:
    """With ago=True a duration counts back; a too-long one says so."""
    assert parse_when("7d", NOW, ago=True) == NOW - timedelta(days=7)
    with pytest.raises(ValueError, match="duration '9999999999d' is too long"):
        parse_when("9999999999d", NOW, ago=True)
    with pytest.raises(ValueError, match="or a duration before now"):
        parse_when("inf", NOW, ago=True)
    late = datetime(9990, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="time '36500d' is out of range"):
        parse_when("36500d", late)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(days=1), "1d"),
        (timedelta(days=8, minutes=1), "1w1d1m"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(seconds=90.25), "1m30s250ms"),
        (timedelta(milliseconds=250), "250ms"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    """Durations print as the parsers read them, never as str(timedelta)."""
    assert format_duration(value) == text
    assert parse_duration(text) == value
