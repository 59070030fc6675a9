"""Per-key activity from the audit log: last use, requests and tokens lately.

One pass over the records, for ``keys list``. A request counts as a key's use
when it counts as a request in usage reports (``report.Totals``): authproxy
admitted it, whatever Ollama answered; a denied request is no use. Days are
UTC days; "30 days" means the 30 times 24 hours before now.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from authproxy.metering.report import (
    DENIED_OUTCOMES,
    Totals,
    is_admin_token,
    record_key_id,
)
from authproxy.times import format_timestamp, parse_timestamp

WINDOW: Final = timedelta(days=30)


@dataclass(slots=True)
class Activity:
    """What one key did: its last admitted request and recent totals."""

    last_used: datetime | None = None
    today: Totals = field(default_factory=Totals)
    last_30d: Totals = field(default_factory=Totals)

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form ``keys list --json`` prints."""
        last = self.last_used
        return {
            "last_used_at": format_timestamp(last) if last is not None else None,
            "requests_today": self.today.requests,
            "tokens_today": self.today.total_tokens,
            "requests_30d": self.last_30d.requests,
            "tokens_30d": self.last_30d.total_tokens,
        }


def key_activity(
    records: Iterable[dict[str, Any]], now: datetime
) -> dict[str, Activity]:
    """Sum each key id's admitted requests and tokens: today (UTC) and 30 days.

    Records without a key id, denied ones, admin-JWT ones and ones without a
    readable ``ts`` are skipped.
    """
    now = now.astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = now - WINDOW
    result: dict[str, Activity] = {}
    for record in records:
        key_id = record_key_id(record)
        if (
            key_id is None
            or record.get("outcome") in DENIED_OUTCOMES
            or is_admin_token(record)
        ):
            continue
        try:
            ts = parse_timestamp(str(record.get("ts")))
        except ValueError:
            continue
        activity = result.setdefault(key_id, Activity())
        if activity.last_used is None or ts > activity.last_used:
            activity.last_used = ts
        if ts >= start:
            activity.last_30d.add(record)
        if ts >= midnight:
            activity.today.add(record)
    return result
