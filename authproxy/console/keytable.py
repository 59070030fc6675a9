"""The rows of the keys table: each key, its recent numbers, filtered and sorted.

The numbers come from ``admin.usage.usage_data`` grouped by key and UTC day,
the source ``GET /admin/usage`` reads (the audit log, or the fleet's counters
in Redis): "today" is the current UTC day, "30 days" the last 30 UTC days
with today. Last use comes from the audit log's records (``keys list``'s
``metering.activity``); with Redis counters, which keep days and not times,
it is the last day with a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from authproxy.admin.usage import usage_data
from authproxy.errors import Denied
from authproxy.keys.codec import describe
from authproxy.keys.record import KeyRecord
from authproxy.metering.activity import key_activity
from authproxy.metering.logfiles import rotated_files
from authproxy.metering.report import read_records
from authproxy.times import format_timestamp
from authproxy.web.appkeys import CONFIG_KEY, FLEET_USAGE_KEY

DAYS: Final = 30
STATUSES: Final = ("all", "active", "disabled", "revoked", "expired")
KINDS: Final = ("token", "password", "ollama")
# Sortable columns: the query's name -> the row's field.
SORTS: Final = {
    "name": "name",
    "id": "id",
    "kind": "kind",
    "status": "status",
    "created": "created_at",
    "expires": "expires_at",
    "last_used": "last_used",
    "requests_today": "requests_today",
    "tokens_today": "tokens_today",
    "requests_30d": "requests_30d",
    "tokens_30d": "tokens_30d",
}


@dataclass(slots=True)
class KeyNumbers:
    """One key's recent requests and tokens, per UTC day (oldest first)."""

    days: dict[date, tuple[int, int]] = field(default_factory=dict)
    last_used: str | None = None

    def today(self, today: date) -> tuple[int, int]:
        """Requests and tokens of ``today``."""
        return self.days.get(today, (0, 0))

    def total(self) -> tuple[int, int]:
        """Requests and tokens of every day held (the 30 days)."""
        return (
            sum(r for r, _ in self.days.values()),
            sum(t for _, t in self.days.values()),
        )


def window(now: datetime) -> tuple[date, datetime]:
    """Return the first UTC day of the 30 and its midnight."""
    first = (now.astimezone(UTC) - timedelta(days=DAYS - 1)).date()
    return first, datetime(first.year, first.month, first.day, tzinfo=UTC)


async def key_numbers(
    main: web.Application, now: datetime
) -> tuple[dict[str, KeyNumbers], str | None]:
    """Return every key's numbers over the 30 days, and why they are missing, if so.

    Returns:
        The numbers by key id, and ``None`` or the reason the columns are empty
        (the usage counters cannot be read).
    """
    _, since = window(now)
    try:
        report = await usage_data(main, ["key", "day"], since, None, now)
    except Denied as err:
        return {}, err.message
    numbers: dict[str, KeyNumbers] = {}
    for row in report["rows"]:
        key_id = row.get("key_id")
        if not key_id:
            continue
        day = date.fromisoformat(str(row["day"]))
        entry = numbers.setdefault(key_id, KeyNumbers())
        entry.days[day] = (int(row["requests"]), int(row["total_tokens"]))
    if main.get(FLEET_USAGE_KEY) is not None:
        for entry in numbers.values():
            used = [d for d, (requests, _) in entry.days.items() if requests]
            entry.last_used = max(used).isoformat() if used else None
    else:
        for key_id, last in (await _last_used(main, now)).items():
            numbers.setdefault(key_id, KeyNumbers()).last_used = last
    return numbers, None


async def _last_used(main: web.Application, now: datetime) -> dict[str, str]:
    """Return each key's last admitted request time from the audit log."""
    audit_file = Path(main[CONFIG_KEY].audit.file)

    def compute() -> dict[str, str]:
        files = [p for p in rotated_files(audit_file) if p.exists()]
        try:
            activity = key_activity(read_records(files), now)
        except OSError:
            return {}
        return {
            key_id: format_timestamp(a.last_used)
            for key_id, a in activity.items()
            if a.last_used is not None
        }

    return await asyncio.get_running_loop().run_in_executor(None, compute)


def key_row(
    record: KeyRecord, numbers: KeyNumbers | None, now: datetime
) -> dict[str, Any]:
    """Return one row of the table: ``describe`` plus the numbers."""
    row = describe(record, now)
    entry = numbers or KeyNumbers()
    today = now.astimezone(UTC).date()
    row["requests_today"], row["tokens_today"] = entry.today(today)
    row["requests_30d"], row["tokens_30d"] = entry.total()
    row["last_used"] = entry.last_used
    return row


def filter_rows(
    rows: Sequence[dict[str, Any]], query: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Keep the rows matching ``q`` (name, id or note), ``status`` and ``kind``."""
    text = query.get("q", "").strip().lower()
    status = query.get("status", "all")
    kind = query.get("kind", "")
    kept = []
    for row in rows:
        haystack = " ".join(str(row.get(f) or "") for f in ("name", "id", "note"))
        if text and text not in haystack.lower():
            continue
        if status in STATUSES and status != "all" and row["status"] != status:
            continue
        if kind in KINDS and row["kind"] != kind:
            continue
        kept.append(row)
    return kept


def sort_rows(
    rows: list[dict[str, Any]], query: Mapping[str, str]
) -> tuple[list[dict[str, Any]], str, str]:
    """Sort by the query's ``sort`` column and ``order``; return what was used."""
    column = query.get("sort", "name")
    if column not in SORTS:
        column = "name"
    order = "desc" if query.get("order") == "desc" else "asc"
    name = SORTS[column]

    def sort_key(row: dict[str, Any]) -> tuple[bool, Any, str]:
        value = row.get(name)
        # Missing values (never used, no expiry) sort last either way up.
        missing = value is None
        if isinstance(value, str):
            value = value.lower()
        return (missing != (order == "desc"), value if not missing else 0, row["id"])

    return sorted(rows, key=sort_key, reverse=order == "desc"), column, order
