"""limits.quotas: requests per minute, concurrency and token quotas per key."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from authproxy.keys.record import KeyLimits
from authproxy.limits.quotas import KeyLimiter, Refusal, Ticket
from authproxy.web.appkeys import KEY_LIMITS_KEY
from tests.support.clock import WallClock
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import MakeKey
from tests.support.payloads import CHAT

NOON = datetime.fromisoformat("2026-11-10T12:00:00+00:00")


def ticket_of(result: Ticket | Refusal) -> Ticket:
    assert isinstance(result, Ticket), result
    return result


class TestKeyLimiter:
    def test_reservations_count_against_the_quota(self) -> None:
        """Held tokens count: the request crossing the quota passes, the next not."""
        limiter = KeyLimiter(WallClock(NOON), None)
        limits = KeyLimits(tokens_per_day=100)
        first = ticket_of(limiter.admit("k", limits, metered=True))
        assert limiter.reserve(first, 60) is None
        second = ticket_of(limiter.admit("k", limits, metered=True))
        assert limiter.reserve(second, 60) is None  # 60 < 100: it may cross
        third = ticket_of(limiter.admit("k", limits, metered=True))
        refusal = limiter.reserve(third, 1)
        assert refusal is not None
        assert (refusal.reason, refusal.limit, refusal.remaining) == (
            "token_quota_day",
            100,
            0,
        )
        assert refusal.retry_after == 12 * 3600
        assert limiter.reserved("k") == 120

    def test_settle_replaces_the_reservation_with_the_real_count(self) -> None:
        """Settling drops the estimate, charges the real count, and happens once."""
        limiter = KeyLimiter(WallClock(NOON), None)
        limits = KeyLimits(tokens_per_day=100, concurrent=1)
        ticket = ticket_of(limiter.admit("k", limits, metered=True))
        assert limiter.reserve(ticket, 90) is None
        limiter.settle(ticket, 12)
        limiter.settle(ticket, 12)
        assert limiter.reserved("k") == 0
        assert limiter.usage("k") == (12, 12)
        # The concurrency slot came back exactly once.
        again = ticket_of(limiter.admit("k", limits, metered=True))
        assert isinstance(limiter.admit("k", limits, metered=True), Refusal)
        limiter.settle(again, 0)
        assert limiter.reserved("k") == 0
        assert limiter.usage("k") == (12, 12)

    def test_month_quota_counts_reservations_too(self) -> None:
        """The month quota refuses on used plus reserved like the day quota."""
        clock = WallClock(NOON)
        limiter = KeyLimiter(clock, None)
        limits = KeyLimits(tokens_per_month=50)
        done = ticket_of(limiter.admit("k", limits, metered=True))
        assert limiter.reserve(done, 40) is None
        limiter.settle(done, 40)
        clock.now += timedelta(days=1)  # a new day, the same month
        running = ticket_of(limiter.admit("k", limits, metered=True))
        assert limiter.reserve(running, 10) is None  # 40 used + 10 held = 50
        refusal = limiter.reserve(ticket_of(limiter.admit("k", limits)), 1)
        assert refusal is not None
        assert refusal.reason == "token_quota_month"
        assert refusal.message == "token quota of 50 per month used up"

    def test_a_used_up_quota_refuses_metered_requests_at_admission(self) -> None:
        """Past the quota a metered request is refused before its body is read."""
        limiter = KeyLimiter(WallClock(NOON), None)
        limits = KeyLimits(tokens_per_day=10)
        limiter.charge("k", 10)
        refused = limiter.admit("k", limits, metered=True)
        assert isinstance(refused, Refusal)
        assert refused.reason == "token_quota_day"
        unmetered = ticket_of(limiter.admit("k", limits, metered=False))
        limiter.settle(unmetered, 0)
        assert limiter.usage("k") == (10, 10)

    def test_reservations_are_never_saved(self, tmp_path: Path) -> None:
        """The state file keeps counters, not in-flight reservations or slots."""
        path = tmp_path / "limits-state.json"
        clock = WallClock(NOON)
        limiter = KeyLimiter(clock, path)
        limits = KeyLimits(tokens_per_day=100)
        ticket = ticket_of(limiter.admit("k", limits, metered=True))
        limiter.charge("k", 7)
        assert limiter.reserve(ticket, 50) is None
        limiter.save()
        saved = json.loads(path.read_text())["keys"]["k"]
        assert saved["day_tokens"] == 7
        assert "reserved" not in saved
        assert "in_flight" not in saved
        # A file written with transient fields still loads them as zero.
        saved.update(reserved=99, in_flight=3)
        path.write_text(json.dumps({"version": 1, "keys": {"k": saved}}))
        restarted = KeyLimiter(clock, path)
        assert restarted.load() is True
        assert restarted.reserved("k") == 0
        assert restarted.usage("k") == (7, 7)
        assert restarted.reserve(ticket_of(restarted.admit("k", limits)), 1) is None


async def test_requests_per_minute(
    start_proxy, make_key: MakeKey, fake: FakeOllama
) -> None:
    """rpm 3: three requests, then 429 with Retry-After and X-RateLimit-*."""
    limited = make_key("rpm", limits={"requests_per_minute": 3})
    clock = WallClock(NOON)
    client = await start_proxy(clock=clock)
    auth = {"Authorization": f"Bearer {limited.token}"}
    assert [(await client.get("/api/tags", headers=auth)).status for _ in range(3)] == [
        200
    ] * 3
    fake.received.clear()
    resp = await client.get("/api/tags", headers=auth)
    assert resp.status == 429
    assert await resp.json() == {
        "error": "rate limit of 3 requests per minute exceeded"
    }
    assert resp.headers["Retry-After"] == "20"
    assert resp.headers["X-RateLimit-Limit"] == "3"
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    assert resp.headers["X-RateLimit-Reset"] == "60"
    assert fake.received == []
    clock.now += timedelta(seconds=20)
    assert (await client.get("/api/tags", headers=auth)).status == 200
    assert (await client.get("/api/tags", headers=auth)).status == 429


async def test_concurrent_requests(
    start_proxy, make_key: MakeKey, fake: FakeOllama
) -> None:
    """concurrent 1: a second request during a stream gets 429; later it works."""
    limited = make_key("single", limits={"concurrent": 1})
    client = await start_proxy()
    auth = {"Authorization": f"Bearer {limited.token}"}
    fake.behaviour.tokens = [f"t{i}" for i in range(10)]
    fake.behaviour.chunk_delay = 0.05
    first = await client.post("/api/chat", json=CHAT, headers=auth)
    await first.content.readline()
    second = await client.get("/api/tags", headers=auth)
    assert second.status == 429
    assert await second.json() == {"error": "too many concurrent requests for this key"}
    assert second.headers["Retry-After"] == "1"
    await first.read()
    assert (await client.get("/api/tags", headers=auth)).status == 200


@pytest.mark.parametrize(
    ("limit", "advance", "reason"),
    [
        ("tokens_per_day", timedelta(days=1), "day"),
        ("tokens_per_month", timedelta(days=31), "month"),
    ],
)
async def test_token_quotas(
    start_proxy, make_key: MakeKey, limit, advance, reason
) -> None:
    """The request crossing a quota completes; the next waits for the period."""
    limited = make_key("quota", limits={limit: 50})
    clock = WallClock(NOON)
    client = await start_proxy(clock=clock)
    auth = {"Authorization": f"Bearer {limited.token}"}
    assert (await client.post("/api/chat", json=CHAT, headers=auth)).status == 200  # 30
    assert (await client.post("/api/chat", json=CHAT, headers=auth)).status == 200  # 60
    resp = await client.post("/api/chat", json=CHAT, headers=auth)
    assert resp.status == 429
    assert await resp.json() == {"error": f"token quota of 50 per {reason} used up"}
    expected = {"day": 12 * 3600, "month": 20 * 86400 + 12 * 3600}[reason]
    assert resp.headers["Retry-After"] == str(expected)
    assert client.app[KEY_LIMITS_KEY].usage(limited.record.id) == (60, 60)
    clock.now += advance
    assert (await client.post("/api/chat", json=CHAT, headers=auth)).status == 200
