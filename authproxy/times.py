"""Time handling: the injectable clock, durations like ``24h`` and RFC 3339 stamps."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

Clock = Callable[[], datetime]

_DURATION_RE: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS: Final = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as ``90s``, ``15m``, ``1h30m``, ``7d`` or ``0``.

    Args:
        text: the duration; a bare number means seconds.

    Raises:
        ValueError: the text is not a duration.

    Returns:
        The duration.
    """
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds < 0:
            raise ValueError(f"negative duration {text!r}")
        return timedelta(seconds=seconds)
    pos = 0
    total = 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"invalid duration {text!r} (examples: 90s, 15m, 24h, 7d)")
    return timedelta(seconds=total)


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 / ISO 8601 timestamp; a naive one is taken as UTC.

    Raises:
        ValueError: the text is not a timestamp.
    """
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_when(text: str, now: datetime) -> datetime:
    """Parse an absolute timestamp or a duration counted from ``now``.

    Raises:
        ValueError: the text is neither a timestamp nor a duration.
    """
    try:
        return now + parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_timestamp(text)
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: expected RFC 3339 (2026-12-31T00:00:00Z) "
            "or a duration from now (30d, 12h)"
        ) from None


def format_timestamp(value: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with a ``Z`` suffix."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
