"""metering.fleet: usage counters in a real Redis, summed like the audit report."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import pytest
import redis

from authproxy.config.state import StateConfig
from authproxy.metering.fleet import RETENTION_DAYS, FleetUsage, report_days
from authproxy.metering.report import DIMENSIONS, aggregate, as_rows
from authproxy.state.connection import async_client
from tests.support.audit import USAGE_RECORDS
from tests.support.redis import RedisServer, free_port

NOW: Final = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PREFIX: Final = "t:"
# The shared records, served by two replicas (and one record from before
# records named their replica).
RECORDS: Final = [
    {**r, "replica": replica}
    for r, replica in zip(USAGE_RECORDS, ["a", "b", "a", None], strict=True)
]


def _state(url: str) -> StateConfig:
    return StateConfig(backend="redis", redis_url=url, prefix=PREFIX)


@pytest.fixture
async def counters(redis_server: RedisServer) -> AsyncIterator[FleetUsage]:
    """A FleetUsage on the test's redis-server."""
    usage = FleetUsage(async_client(_state(redis_server.url)), PREFIX)
    yield usage
    await usage.client.aclose()


async def _count_all(usage: FleetUsage, records: list[dict[str, Any]]) -> None:
    for record in records:
        usage.count(dict(record))
    await usage.flush()


async def test_every_grouping_equals_the_audit_report(counters: FleetUsage) -> None:
    """For every choice of dimensions the counters give the audit report's rows."""
    await _count_all(counters, RECORDS)
    names = {"k1": "alice-renamed"}
    for size in range(len(DIMENSIONS) + 1):
        for by in itertools.permutations(DIMENSIONS, size):
            rows, _, _ = await counters.report(by, None, None, NOW, names)
            expected = as_rows(aggregate(RECORDS, by=by), by, names)
            assert rows == expected, by


async def test_replicas_sum_into_one_count(redis_server: RedisServer) -> None:
    """Two replicas counting into one Redis report the fleet's totals."""
    a = FleetUsage(async_client(_state(redis_server.url)), PREFIX)
    b = FleetUsage(async_client(_state(redis_server.url)), PREFIX)
    await _count_all(a, RECORDS[:2])
    await _count_all(b, RECORDS[2:])
    rows, _, _ = await b.report(["key"], None, None, NOW)
    assert [(r["key_id"], r["key"], r["requests"], r["denied"]) for r in rows] == [
        ("k1", "alice", 2, 0),
        ("k2", "bob", 1, 0),
        ("k9", None, 0, 1),
    ]
    for usage in (a, b):
        await usage.client.aclose()


async def test_windows_cover_the_whole_days_they_touch(counters: FleetUsage) -> None:
    """since and until select whole UTC days; the days read are returned."""
    await _count_all(counters, RECORDS)
    since = datetime(2026, 11, 21, 9, 15, tzinfo=UTC)  # after a record that day
    rows, first, last = await counters.report(["day"], since, None, NOW)
    assert (first, last) == (date(2026, 11, 21), date(2026, 11, 23))
    assert [(r["day"], r["requests"], r["denied"]) for r in rows] == [
        ("2026-11-21", 1, 1)
    ]
    until = datetime(2026, 11, 21, tzinfo=UTC)  # midnight: the 21st is out
    rows, _, last = await counters.report(["day"], None, until, NOW)
    assert last == date(2026, 11, 20)
    assert [r["day"] for r in rows] == ["2026-11-20"]


def test_report_days_stay_within_retention() -> None:
    """A window older than the counters' retention reads only what may exist."""
    first, last = report_days(NOW - timedelta(days=5000), None, NOW)
    assert first == (NOW - timedelta(days=RETENTION_DAYS)).date()
    assert last == date(2026, 11, 23)
    first, last = report_days(NOW, NOW - timedelta(days=1), NOW)
    assert last < first  # an empty window reads nothing


async def test_counters_expire_after_retention(
    counters: FleetUsage, redis_server: RedisServer
) -> None:
    """A day's hash expires RETENTION_DAYS after its day; names are kept as long."""
    await _count_all(counters, RECORDS[:1])
    sync = redis.Redis.from_url(redis_server.url)
    expires = sync.expiretime(f"{PREFIX}usage:day:2026-11-20")
    day = datetime(2026, 11, 20, tzinfo=UTC)
    assert expires == int((day + timedelta(days=RETENTION_DAYS + 1)).timestamp())
    assert sync.ttl(f"{PREFIX}usage:names") > (RETENTION_DAYS - 1) * 86400
    assert sync.hgetall(f"{PREFIX}usage:names") == {b"k1": b"alice"}
    sync.close()


async def test_an_unreachable_redis_loses_counts_but_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Counting returns at once; failed batches are counted and logged once."""
    lost: list[int] = []
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    usage = FleetUsage(async_client(_state(url)), PREFIX, on_failure=lost.append)
    caplog.set_level(logging.ERROR)
    await _count_all(usage, RECORDS)
    await _count_all(usage, RECORDS[:2])
    assert usage.failures == len(RECORDS) + 2
    assert sum(lost) == usage.failures
    failed = [r for r in caplog.records if "usage_counters_failed" in r.getMessage()]
    assert len(failed) == 1
    with pytest.raises((redis.RedisError, OSError)):
        await usage.report(["key"], None, None, NOW)
    await usage.client.aclose()


async def test_records_without_a_day_are_not_counted(counters: FleetUsage) -> None:
    """A record whose ts is no timestamp cannot be put on a day; it is skipped."""
    await _count_all(counters, [{**RECORDS[0], "ts": "yesterday"}])
    rows, _, _ = await counters.report([], None, None, NOW)
    assert rows == []


async def test_denials_count_by_reason_as_in_the_audit_report(
    counters: FleetUsage,
) -> None:
    """Denied requests keep their reason; other counters count to reason ``-``."""
    denied = [
        {"ts": "2026-11-21T10:00:00Z", "key_id": "k1", "outcome": "denied", "reason": r}
        for r in ("key_revoked", "key_revoked", "model_not_allowed")
    ]
    records = [*RECORDS, *denied]
    await _count_all(counters, records)
    for by in (["reason"], ["key", "reason"], ["day", "reason", "model"]):
        rows, _, _ = await counters.report(by, None, None, NOW)
        assert rows == as_rows(aggregate(records, by=by), by), by
    rows, _, _ = await counters.report(["reason"], None, None, NOW)
    assert {r["reason"]: r["denied"] for r in rows} == {
        "-": 1,
        "key_revoked": 2,
        "model_not_allowed": 1,
    }
