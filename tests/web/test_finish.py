"""web.finish: finished requests recorded a loop turn at a time, in order, none lost."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from authproxy.config.model import AuditConfig, MetricsConfig
from authproxy.metering.audit import AuditWriter
from authproxy.metering.exchange import Exchange
from authproxy.metering.metrics import Metrics
from authproxy.metering.recent import RecentRequests
from authproxy.policy.routes import RouteClass
from authproxy.web.appkeys import AUDIT_KEY, FINISHER_KEY, RECENT_KEY
from authproxy.web.finish import Finisher, Sinks
from tests.support.audit import read_audit
from tests.support.payloads import CHAT


def exchange(n: int, **fields: Any) -> Exchange:
    """A finished request's record, as the edge leaves it."""
    values: dict[str, Any] = {
        "request_id": f"r{n}",
        "method": "GET",
        "path": "/api/tags",
        "client": "127.0.0.1",
        "started": time.monotonic(),
        "started_at": datetime.now(UTC),
        "route_class": RouteClass.MODELS_READ,
        "status": 200,
    } | fields
    return Exchange(**values)


def finisher_on(path: Path) -> tuple[Finisher, AuditWriter, RecentRequests, Metrics]:
    """A finisher feeding a real audit file, live window and metrics."""
    writer = AuditWriter(AuditConfig(file=str(path)))
    writer.open()
    recent = RecentRequests()
    metrics = Metrics(MetricsConfig())
    sinks = Sinks(writer, None, recent, metrics, "r1")
    return Finisher(lambda: sinks), writer, recent, metrics


async def test_a_turns_requests_are_recorded_at_the_next_in_order(
    tmp_path: Path,
) -> None:
    """Nothing is recorded during the turn; at the next, all of it, in order."""
    path = tmp_path / "usage.jsonl"
    finisher, writer, recent, metrics = finisher_on(path)
    for n in range(4):
        finisher.add(exchange(n), time.monotonic())
    assert (finisher.waiting, len(recent), read_audit(path)) == (4, 0, [])
    await asyncio.sleep(0)
    assert finisher.waiting == 0
    assert [r["request_id"] for r in read_audit(path)] == ["r0", "r1", "r2", "r3"]
    assert [r["replica"] for r in read_audit(path)] == ["r1"] * 4
    assert [r["request_id"] for r in recent.rows()] == ["r3", "r2", "r1", "r0"]
    assert b'authproxy_requests_total{route="models:read",status="200"} 4.0' in (
        metrics.render()
    )
    writer.close()


async def test_one_bad_record_does_not_cost_the_others(
    tmp_path: Path, log_capture
) -> None:
    """A record that cannot be built is logged; the turn's other records go on."""
    path = tmp_path / "usage.jsonl"
    finisher, writer, recent, _ = finisher_on(path)
    finisher.add(exchange(0), time.monotonic())
    finisher.add(exchange(1, started_at=None), time.monotonic())  # a bug's record
    finisher.add(exchange(2), time.monotonic())
    await asyncio.sleep(0)
    assert [r["request_id"] for r in read_audit(path)] == ["r0", "r2"]
    assert len(recent) == 2
    (failed,) = log_capture.events("record_failed")
    assert failed["request_id"] == "r1"
    writer.close()


async def test_the_proxy_records_what_ended_as_it_stops(
    proxy: TestClient[Any, Any], bearer: dict[str, str], audit_path: Path
) -> None:
    """Stopping in the turn a request ended still writes its record, before the
    audit log closes."""
    resp = await proxy.post("/api/chat", json=CHAT, headers=bearer)
    await resp.read()
    finisher = proxy.app[FINISHER_KEY]
    finisher.add(exchange(9), time.monotonic())  # ended in this very turn
    writer = proxy.app[AUDIT_KEY]
    await proxy.close()
    assert finisher.waiting == 0
    assert writer.waiting == 0
    records = read_audit(audit_path)
    assert [r["request_id"] for r in records][-1] == "r9"
    assert len(proxy.app[RECENT_KEY]) == 2
