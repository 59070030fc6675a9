"""Abuse limits: brute-force blocking, floods, every per-key limit, restarts."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from http import HTTPStatus
from pathlib import Path

import pytest

from authproxy.auth.bruteforce import FailureLimiter, client_bucket
from authproxy.cli.main import main
from authproxy.keys.store import format_token, read_store
from authproxy.times import utc_now
from authproxy.web.appkeys import KEY_LIMITS_KEY, VERIFIER_KEY
from tests.conftest import MakeKey
from tests.support.fake_ollama.server import FakeOllama

CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}


class FakeTime:
    """A monotonic clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestFailureLimiter:
    def test_blocks_after_the_threshold_within_the_window(self) -> None:
        """The 3rd failure inside 60 s blocks the client for the cool-down."""
        clock = FakeTime()
        limiter = FailureLimiter(
            threshold=3, window=60, cooldown=300, max_clients=10, monotonic=clock
        )
        assert limiter.failed("10.0.0.1") is False
        clock.now += 30
        assert limiter.failed("10.0.0.1") is False
        assert limiter.retry_after("10.0.0.1") is None
        assert limiter.failed("10.0.0.1") is True
        assert limiter.retry_after("10.0.0.1") == 300
        assert limiter.retry_after("10.0.0.2") is None
        clock.now += 299.5
        assert limiter.retry_after("10.0.0.1") == 1
        clock.now += 1
        assert limiter.retry_after("10.0.0.1") is None

    def test_old_failures_slide_out(self) -> None:
        """Failures older than the window do not count."""
        clock = FakeTime()
        limiter = FailureLimiter(
            threshold=3, window=60, cooldown=300, max_clients=10, monotonic=clock
        )
        for _ in range(2):
            limiter.failed("a")
        clock.now += 61
        assert limiter.failed("a") is False
        assert limiter.retry_after("a") is None

    def test_memory_is_bounded(self) -> None:
        """At most max_clients addresses are tracked (oldest forgotten first)."""
        limiter = FailureLimiter(
            threshold=5, window=60, cooldown=1, max_clients=100, monotonic=FakeTime()
        )
        for i in range(1000):
            limiter.failed(f"10.0.{i // 256}.{i % 256}")
        assert len(limiter._clients) == 100

    def test_disabled_with_zero(self) -> None:
        """auth_failures 0 turns the limiter off."""
        limiter = FailureLimiter(threshold=0, window=60, cooldown=300, max_clients=10)
        assert limiter.failed("x") is False
        assert limiter.retry_after("x") is None

    @pytest.mark.parametrize(
        ("address", "bucket"),
        [
            ("192.0.2.7", "192.0.2.7"),
            ("2001:db8::1", "2001:db8::/64"),
            ("2001:db8::ffff:1", "2001:db8::/64"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("weird", "weird"),
        ],
    )
    def test_ipv6_is_counted_per_64(self, address, bucket) -> None:
        """An attacker rotating addresses inside one IPv6 /64 is one client."""
        assert client_bucket(address) == bucket


async def test_blocked_client_gets_429_before_any_hashing(
    start_proxy, key, fake: FakeOllama
) -> None:
    """Past the threshold even a valid key from that address gets 429, at no cost."""
    client = await start_proxy(
        {"limits.auth_failures": 3, "limits.auth_cooldown": "1h"}
    )
    stats = client.app[VERIFIER_KEY].stats
    wrong = {"Authorization": f"Bearer {format_token(key.record.id, 'Z' * 43)}"}
    for _ in range(3):
        assert (await client.get("/api/tags", headers=wrong)).status == 401
    resp = await client.get(
        "/api/tags", headers={"Authorization": f"Bearer {key.token}"}
    )
    assert resp.status == HTTPStatus.TOO_MANY_REQUESTS
    assert await resp.json() == {
        "error": "too many failed authentications; retry later"
    }
    assert 3590 <= int(resp.headers["Retry-After"]) <= 3600
    assert stats.argon2_verifications == 0
    assert fake.received == []


async def test_other_clients_are_unaffected(start_proxy, key, fake: FakeOllama) -> None:
    """Behind a trusted proxy, blocking one client leaves the others working."""
    client = await start_proxy(
        {"limits.auth_failures": 2, "server.trusted_proxies": ["127.0.0.1"]}
    )
    attacker = {"X-Forwarded-For": "203.0.113.9", "Authorization": "Bearer nope"}
    for _ in range(2):
        await client.get("/api/tags", headers=attacker)
    assert (await client.get("/api/tags", headers=attacker)).status == 429
    honest = {"X-Forwarded-For": "198.51.100.4", "Authorization": f"Bearer {key.token}"}
    assert (await client.get("/api/tags", headers=honest)).status == 200


async def test_flood_of_bogus_credentials(start_proxy, key, fake: FakeOllama) -> None:
    """A bounded flood of bogus keys (many addresses) leaves the valid key working."""
    client = await start_proxy({"server.trusted_proxies": ["127.0.0.1"]})
    stats = client.app[VERIFIER_KEY].stats
    valid = {"Authorization": f"Bearer {key.token}"}

    async def bogus(i: int) -> int:
        token = format_token(key.record.id if i % 2 else "aaaaaaaaaaaa", f"{i:0>43}")
        headers = {
            "Authorization": f"Bearer {token}",
            "X-Forwarded-For": f"198.18.{i % 250}.{i // 250}",
        }
        resp = await client.get("/api/tags", headers=headers)
        status: int = resp.status
        return status

    async def flood() -> list[int]:
        statuses = []
        for second in range(2):
            batch = range(second * 200, (second + 1) * 200)
            statuses += await asyncio.gather(*(bogus(i) for i in batch))
            await asyncio.sleep(0.5)
        return statuses

    async def honest() -> list[int]:
        statuses = []
        for _ in range(40):
            statuses.append((await client.get("/api/tags", headers=valid)).status)
            await asyncio.sleep(0.02)
        return statuses

    flood_statuses, honest_statuses = await asyncio.gather(flood(), honest())
    assert set(flood_statuses) == {401}
    assert honest_statuses == [200] * 40
    assert stats.argon2_verifications == 1  # the valid key, once; bogus ones cost none


# --- per-key limits --------------------------------------------------------------


class WallClock:
    """A UTC clock a test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utc_now()

    def __call__(self) -> datetime:
        return self.now


async def test_requests_per_minute(
    start_proxy, make_key: MakeKey, fake: FakeOllama
) -> None:
    """rpm 3: three requests, then 429 with Retry-After and X-RateLimit-*."""
    limited = make_key("rpm", limits={"requests_per_minute": 3})
    clock = WallClock()
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
    clock = WallClock(datetime.fromisoformat("2026-11-10T12:00:00+00:00"))
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


async def test_limits_survive_a_restart(
    start_proxy, make_key: MakeKey, audit_path: Path, aiohttp_client
) -> None:
    """Counters come back from the state file, or from the audit log without it."""
    limited = make_key(
        "persist", limits={"tokens_per_day": 50, "requests_per_minute": 5}
    )
    clock = WallClock(datetime.fromisoformat("2026-11-10T12:00:00+00:00"))
    auth = {"Authorization": f"Bearer {limited.token}"}
    first = await start_proxy(clock=clock)
    for _ in range(2):
        assert (await first.post("/api/chat", json=CHAT, headers=auth)).status == 200
    await first.close()  # cleanup saves the state file
    state = audit_path.with_name("limits-state.json")
    saved = json.loads(state.read_text())["keys"][limited.record.id]
    assert (saved["day_tokens"], saved["bucket"]) == (60, 3.0)
    second = await start_proxy(clock=clock)
    resp = await second.post("/api/chat", json=CHAT, headers=auth)
    assert resp.status == 429
    assert resp.headers["X-RateLimit-Limit"] == "50"
    await second.close()
    state.unlink()
    third = await start_proxy(clock=clock)
    assert (await third.post("/api/chat", json=CHAT, headers=auth)).status == 429
    assert third.app[KEY_LIMITS_KEY].usage(limited.record.id) == (60, 60)


async def test_keys_without_limits_are_not_tracked(proxy, bearer, key) -> None:
    """Unlimited keys skip the limiter entirely."""
    await (await proxy.post("/api/chat", json=CHAT, headers=bearer)).read()
    assert proxy.app[KEY_LIMITS_KEY]._keys == {}


def test_cli_sets_limits(
    capsys, config_file: Path, keys_path: Path, secrets_seen
) -> None:
    """keys create/update take --rpm, --concurrency, --tokens-per-* (0 = none)."""
    assert (
        main(
            [
                "keys",
                "create",
                "lim",
                "--rpm",
                "60",
                "--tokens-per-day",
                "1000",
                "--json",
                "--config",
                str(config_file),
            ]
        )
        == 0
    )
    secrets_seen.add(json.loads(capsys.readouterr().out)["token"])
    assert (
        main(
            [
                "keys",
                "update",
                "lim",
                "--concurrency",
                "2",
                "--rpm",
                "0",
                "--config",
                str(config_file),
            ]
        )
        == 0
    )
    limits = read_store(keys_path).by_name["lim"].limits
    assert limits.as_dict() == {"concurrent": 2, "tokens_per_day": 1000}
    assert (
        main(["keys", "update", "lim", "--rpm", "-1", "--config", str(config_file)])
        == 1
    )
    assert (
        "limits.requests_per_minute: expected a positive integer or 0"
        in capsys.readouterr().err
    )
