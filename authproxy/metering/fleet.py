"""Usage counters in Redis for the whole fleet (``state.backend: redis``).

Every replica adds each finished request to counters in Redis, per UTC day,
key id, model (as Ollama resolves the name) and replica: ``requests``,
``denied``, prompt, completion and estimated tokens, counted exactly as
``report.Totals`` counts an audit record. ``GET /admin/usage`` on any replica
then sums them for the fleet, where the audit file holds one replica's share.

Per day one hash, ``<prefix>usage:day:<YYYY-MM-DD>``, whose fields are a
metric and a group (``requests:["key id","model","replica"]``; a denied
request's group adds its reason, ``denied:["key id","model","replica","reason"]``,
and groups without one count to reason ``-``); it expires
``RETENTION_DAYS`` after its day. ``<prefix>usage:names`` maps key ids to the
last key name their records held.

Counting never waits for Redis: a request's increments join a batch that one
background task writes with one ``MULTI`` pipeline, then the next batch. When
Redis cannot be reached the batch is lost (counted in ``failures``, logged once
per outage): the counters are then short by those requests, while the audit
files stay complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import orjson
import redis.asyncio
import structlog

from authproxy.metering.report import (
    Totals,
    as_rows,
    model_name,
    record_key_id,
    record_key_name,
    record_reason,
    record_replica,
)
from authproxy.state.connection import RedisError

log = structlog.stdlib.get_logger(__name__)

# Long enough for a year's report with a month to spare.
RETENTION_DAYS: Final = 400
# Distinct counters a batch may hold while Redis is slow; more are dropped
# (and counted as failures), so a hung Redis cannot grow memory without bound.
MAX_PENDING: Final = 100_000
METRICS: Final = ("requests", "denied", "prompt", "completion", "estimated")


def day_key(prefix: str, day: date | str) -> str:
    """Return the name of one day's hash."""
    return f"{prefix}usage:day:{day}"


def names_key(prefix: str) -> str:
    """Return the name of the hash of key names."""
    return f"{prefix}usage:names"


def _day_of(record: Mapping[str, Any]) -> date | None:
    try:
        return date.fromisoformat(str(record.get("ts", ""))[:10])
    except ValueError:
        return None


def _increments(record: dict[str, Any]) -> dict[str, int]:
    totals = Totals()
    totals.add(record)
    return {
        "requests": totals.requests,
        "denied": totals.denied,
        "prompt": totals.prompt_tokens,
        "completion": totals.completion_tokens,
        "estimated": totals.estimated_tokens,
    }


class FleetUsage:
    """Count finished requests in Redis; sum the fleet's counters for reports."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str,
        *,
        on_failure: Callable[[int], None] | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.failures = 0
        self._on_failure = on_failure
        self._pending: dict[date, dict[str, int]] = {}
        self._names: dict[str, str] = {}
        self._held = 0  # requests in the pending batch
        self._size = 0  # counters in the pending batch
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def count(self, record: dict[str, Any]) -> None:
        """Add one audit record to the counters, in the background."""
        day = _day_of(record)
        if day is None:
            return
        key_id = record_key_id(record)
        parts = [
            key_id or "",
            model_name(record.get("model")),
            record_replica(record.get("replica")),
        ]
        reason = record_reason(record)
        if reason != "-":
            parts.append(reason)
        group = orjson.dumps(parts).decode()
        if self._size >= MAX_PENDING:
            self._lost(1)
            return
        fields = self._pending.setdefault(day, {})
        for metric, value in _increments(record).items():
            if value:
                field = f"{metric}:{group}"
                if field not in fields:
                    self._size += 1
                fields[field] = fields.get(field, 0) + value
        name = record_key_name(record)
        if key_id is not None and name is not None:
            self._names[key_id] = name
        self._held += 1
        if self._task is None:
            self._task = asyncio.create_task(self._write_batches())

    async def flush(self) -> None:
        """Wait until what was counted so far has been written (or lost)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _write_batches(self) -> None:
        try:
            while self._pending:
                batch, names, held = self._pending, self._names, self._held
                self._pending, self._names, self._held, self._size = {}, {}, 0, 0
                try:
                    await self._write(batch, names)
                except (RedisError, OSError) as err:
                    self._lost(held, err)
                except Exception as err:  # noqa: BLE001 - counting must never break serving
                    self._lost(held, err)
                else:
                    if self._failing:
                        log.info("usage_counters_recovered")
                    self._failing = False
        finally:
            self._task = None

    async def _write(
        self, batch: dict[date, dict[str, int]], names: dict[str, str]
    ) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            for day, fields in batch.items():
                key = day_key(self.prefix, day)
                for field, value in fields.items():
                    pipe.hincrby(key, field, value)
                start = datetime(day.year, day.month, day.day, tzinfo=UTC)
                pipe.expireat(key, start + timedelta(days=RETENTION_DAYS + 1))
            if names:
                for key_id, name in names.items():
                    pipe.hset(names_key(self.prefix), key_id, name)
                pipe.expire(names_key(self.prefix), RETENTION_DAYS * 86400)
            await pipe.execute()

    def _lost(self, requests: int, err: BaseException | None = None) -> None:
        self.failures += requests
        if self._on_failure is not None:
            self._on_failure(requests)
        if not self._failing:
            self._failing = True
            reason = "too many pending counters" if err is None else type(err).__name__
            log.error("usage_counters_failed", requests=requests, error=reason)

    async def report(
        self,
        by: Sequence[str],
        since: datetime | None,
        until: datetime | None,
        now: datetime,
        names: Mapping[str, str] | None = None,
    ) -> tuple[list[dict[str, Any]], date, date]:
        """Sum the fleet's counters over the whole UTC days the window touches.

        Raises:
            RedisError: Redis cannot be read (``OSError`` too).

        Returns:
            The rows (``report.as_rows``), the first day and the last day read.
        """
        first, last = report_days(since, until, now)
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        async with self.client.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(day_key(self.prefix, day))
            pipe.hgetall(names_key(self.prefix))
            *counters, seen = await pipe.execute()
        known = {_text(k): _text(v) for k, v in seen.items()}
        groups: dict[tuple[str, ...], Totals] = {}
        for day, fields in zip(days, counters, strict=True):
            for field, value in fields.items():
                _add(groups, by, day, _text(field), int(value), known)
        return as_rows(dict(sorted(groups.items())), by, names), first, last


def report_days(
    since: datetime | None, until: datetime | None, now: datetime
) -> tuple[date, date]:
    """Return the first and last UTC day a window touches, within retention.

    ``since`` counts its whole day, ``until`` (exclusive) the day it falls in
    unless it is that day's midnight.
    """
    oldest = (now - timedelta(days=RETENTION_DAYS)).date()
    newest = (now + timedelta(days=1)).date()
    first = max(since.astimezone(UTC).date(), oldest) if since else oldest
    end = until.astimezone(UTC) - timedelta(microseconds=1) if until else None
    last = min(end.date(), newest) if end else newest
    return first, last  # last < first: an empty window


def _add(  # noqa: PLR0917 - one counter into its group
    groups: dict[tuple[str, ...], Totals],
    by: Sequence[str],
    day: date,
    field: str,
    value: int,
    known: Mapping[str, str],
) -> None:
    metric, _, encoded = field.partition(":")
    try:
        key_id, model, replica, *rest = orjson.loads(encoded)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return  # not ours
    values = {"key": key_id, "model": model, "day": day.isoformat()}
    values["replica"] = record_replica(replica)
    values["reason"] = str(rest[0]) if rest else "-"
    group = tuple(str(values[d]) for d in by)
    totals = groups.setdefault(group, Totals())
    if "key" in by and key_id in known:
        totals.key_name = known[key_id]
    if metric == "requests":
        totals.requests += value
    elif metric == "denied":
        totals.denied += value
    elif metric == "prompt":
        totals.prompt_tokens += value
    elif metric == "completion":
        totals.completion_tokens += value
    elif metric == "estimated":
        totals.estimated_tokens += value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["RETENTION_DAYS", "FleetUsage", "report_days"]
