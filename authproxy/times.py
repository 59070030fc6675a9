"""Time handling: the injectable clock, durations like ``24h`` and RFC 3339 stamps.

Every parser here turns out-of-range input (``inf``, ``nan``, ``9999999999d``,
``1e400``, a year-9999 stamp with a negative offset) into ``ValueError``, so
callers can report it as bad input instead of an ``OverflowError`` traceback.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

Clock = Callable[[], datetime]

# 100 years: longer than any real expiry, grace or look-back, and small enough
# that ``now`` plus or minus it always fits in a datetime.
MAX_DURATION: Final = timedelta(days=36500)
_MAX_SECONDS: Final = MAX_DURATION.total_seconds()

# ASCII digits only: ``\d`` and ``float()`` would also take "٣", "1_0", "1e3",
# "inf" and "nan".
_SECONDS_RE: Final = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
_PART_RE: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
_PARTS_RE: Final = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d|w))+")
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


def _shown(text: str) -> str:
    """Quote input for an error message, cut short: it may be 64 KiB of digits."""
    text = text.strip()
    return repr(text) if len(text) <= 40 else f"{text[:40]!r}..."


def _too_long(what: str) -> ValueError:
    return ValueError(f"{what} is too long (at most {MAX_DURATION.days}d, 100 years)")


def seconds_to_duration(seconds: float) -> timedelta:
    """Turn a number of seconds (a JSON or YAML number) into a checked duration.

    Args:
        seconds: the number; an ``int`` may be arbitrarily large.

    Raises:
        ValueError: negative, NaN, infinite, or longer than ``MAX_DURATION``.

    Returns:
        The duration.
    """
    if isinstance(seconds, float) and math.isnan(seconds):
        raise ValueError("expected a number of seconds, got NaN")
    if seconds < 0:
        raise ValueError("negative duration")
    # Compared before any conversion: inf and 10**400 both land here.
    if seconds > _MAX_SECONDS:
        raise _too_long("duration")
    return timedelta(seconds=seconds)


def is_duration(text: str) -> bool:
    """Tell whether ``text`` is written as a duration (valid or not in range)."""
    text = text.strip()
    return bool(_SECONDS_RE.fullmatch(text) or _PARTS_RE.fullmatch(text))


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as ``90s``, ``15m``, ``1h30m``, ``7d`` or ``0``.

    Args:
        text: the duration; a bare number means seconds.

    Raises:
        ValueError: the text is not a duration, is negative, or is longer
            than ``MAX_DURATION``.

    Returns:
        The duration.
    """
    text = text.strip()
    if _SECONDS_RE.fullmatch(text):
        seconds = float(text)
        if seconds < 0:
            raise ValueError(f"negative duration {_shown(text)}")
    elif _PARTS_RE.fullmatch(text):
        seconds = sum(
            float(number) * _UNIT_SECONDS[unit]
            for number, unit in _PART_RE.findall(text)
        )
    else:
        raise ValueError(
            f"invalid duration {_shown(text)} (examples: 90s, 15m, 24h, 7d)"
        )
    # float() of a very long digit string is inf, which this also catches.
    if seconds > _MAX_SECONDS:
        raise _too_long(f"duration {_shown(text)}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Format a duration the way the parsers read it: ``1d``, ``1h30m``, ``90s``.

    Whole units from weeks down to seconds, then milliseconds; ``0s`` for none.
    Messages use this, never ``str(timedelta)`` (``1 day, 0:00:00``).
    """
    millis = round(value.total_seconds() * 1000)
    sign, millis = ("-", -millis) if millis < 0 else ("", millis)
    parts = []
    for unit in ("w", "d", "h", "m", "s", "ms"):
        size = round(_UNIT_SECONDS[unit] * 1000)
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + ("".join(parts) or "0s")


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))


def _utc(value: datetime, text: str) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"time {_shown(text)} is out of range") from None


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 / ISO 8601 timestamp; a naive one is taken as UTC.

    Raises:
        ValueError: the text is not a timestamp, or it is not representable
            in UTC (``9999-12-31T23:00:00-05:00``).
    """
    return _utc(_iso(text), text)


def parse_when(text: str, now: datetime, *, ago: bool = False) -> datetime:
    """Parse an absolute timestamp or a duration counted from ``now``.

    Args:
        text: RFC 3339, or a duration such as ``30d``.
        now: the time a duration counts from.
        ago: count a duration back from ``now`` (``--since 7d``), not forward.

    Raises:
        ValueError: the text is neither a timestamp nor a duration, or it is
            out of range; the message says which.

    Returns:
        The aware UTC time.
    """
    if is_duration(text):
        delta = parse_duration(text)
        try:
            return now - delta if ago else now + delta
        except OverflowError:
            raise ValueError(f"time {_shown(text)} is out of range") from None
    try:
        value = _iso(text)
    except ValueError:
        relative = "before now (7d, 12h)" if ago else "from now (30d, 12h)"
        raise ValueError(
            f"invalid time {_shown(text)}: expected RFC 3339 (2026-12-31T00:00:00Z) "
            f"or a duration {relative}"
        ) from None
    return _utc(value, text)


def format_timestamp(value: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with a ``Z`` suffix."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
