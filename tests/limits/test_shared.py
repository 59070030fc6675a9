"""limits.shared: per-key limits counted in Redis, exact across two replicas.

Two real proxies on real sockets share one real redis-server; requests
alternate between them, and a key's limit holds for the pair as for one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from authproxy.auth.principal import Principal
from authproxy.config.load import load_config
from authproxy.keys.record import KeyLimits
from authproxy.limits.shared import SharedAdmission, SharedTicket
from authproxy.metering.exchange import Exchange
from authproxy.policy.routes import RouteClass
from authproxy.state.connection import async_client
from authproxy.times import utc_now
from authproxy.web.app import create_app
from tests.support.auth import bearer_auth
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import MakeKey, ProxyTestServer
from tests.support.payloads import CHAT
from tests.support.polling import poll_until
from tests.support.redis import RedisServer

Client = TestClient[Any, Any]
StartPair = Callable[..., Awaitable[tuple[Client, Client]]]


@pytest.fixture
def start_pair(
    aiohttp_client: AiohttpClient, redis_overrides: dict[str, Any]
) -> StartPair:
    """Start two replicas sharing the test's Redis."""

    async def start(extra: dict[str, Any] | None = None) -> tuple[Client, Client]:
        clients: list[Client] = []
        for _ in range(2):
            config = load_config(None, {**redis_overrides, **(extra or {})})
            clients.append(
                await aiohttp_client(ProxyTestServer(create_app(config), config))
            )
        return clients[0], clients[1]

    return start


def _token(created: Any) -> str:
    token: str | None = created.token
    assert token is not None
    return token


async def _get(client: Client, token: str) -> int:
    resp = await client.get("/api/tags", headers=bearer_auth(token))
    await resp.read()
    return resp.status


async def _chat(client: Client, token: str) -> tuple[int, str]:
    resp = await client.post("/api/chat", json=CHAT, headers=bearer_auth(token))
    body = await resp.read()
    reason = "" if resp.status == HTTPStatus.OK else body.decode()
    return resp.status, reason


async def test_an_rpm_of_ten_admits_exactly_ten_across_two_replicas(
    start_pair: StartPair, make_redis_key: MakeKey
) -> None:
    """Twenty requests alternating between the replicas: ten pass, ten get 429."""
    token = _token(make_redis_key("alice", limits={"requests_per_minute": 10}))
    a, b = await start_pair()
    statuses = [await _get((a, b)[i % 2], token) for i in range(20)]
    assert statuses.count(HTTPStatus.OK) == 10
    assert statuses.count(HTTPStatus.TOO_MANY_REQUESTS) == 10
    assert statuses[:10] == [HTTPStatus.OK] * 10


async def test_parallel_requests_cannot_overshoot_the_rate(
    start_pair: StartPair, make_redis_key: MakeKey
) -> None:
    """Forty requests at once on both replicas still admit exactly ten."""
    token = _token(make_redis_key("alice", limits={"requests_per_minute": 10}))
    a, b = await start_pair()
    statuses = await asyncio.gather(*(_get((a, b)[i % 2], token) for i in range(40)))
    assert statuses.count(HTTPStatus.OK) == 10


async def test_a_token_quota_holds_across_replicas(
    start_pair: StartPair, make_redis_key: MakeKey
) -> None:
    """Used tokens counted on A refuse B: only the request that crosses may exceed."""
    # Each chat costs 30 tokens (the fake's counts); the quota is 50.
    token = _token(make_redis_key("alice", limits={"tokens_per_day": 50}))
    a, b = await start_pair()
    assert (await _chat(a, token))[0] == HTTPStatus.OK

    async def b_admits() -> bool:
        return (await _chat(b, token))[0] == HTTPStatus.OK

    # Once A's request is settled (30 used < 50), B admits the next one, which
    # crosses the line; refusals while A's reservation is held cost nothing.
    assert await poll_until(b_admits, within=1.0)
    for client in (a, b):
        status, reason = await _chat(client, token)
        assert status == HTTPStatus.TOO_MANY_REQUESTS
        assert "token quota of 50 per day used up" in reason


async def test_a_reservation_on_one_replica_holds_off_the_other(
    start_pair: StartPair, make_redis_key: MakeKey, fake: FakeOllama
) -> None:
    """While A's request holds its estimate, B's is refused; nothing is charged."""
    token = _token(make_redis_key("alice", limits={"tokens_per_day": 1000}))
    a, b = await start_pair()
    fake.behaviour.tokens = [f"t{i}" for i in range(10)]
    fake.behaviour.chunk_delay = 0.05
    resp = await a.post("/api/chat", json=CHAT, headers=bearer_auth(token))
    await resp.content.readline()  # admitted: it holds 1 + 4096 tokens
    status, reason = await _chat(b, token)
    assert status == HTTPStatus.TOO_MANY_REQUESTS
    assert "token quota" in reason
    await resp.read()
    fake.behaviour.chunk_delay = 0.0

    async def b_admits() -> bool:
        return (await _chat(b, token))[0] == HTTPStatus.OK

    assert await poll_until(b_admits, within=1.0)


async def test_concurrency_is_shared_and_a_refusal_takes_no_rate(
    start_pair: StartPair, make_redis_key: MakeKey, fake: FakeOllama
) -> None:
    """One slot for both replicas; a request refused for it costs no rpm."""
    limits = {"concurrent": 1, "requests_per_minute": 3}
    token = _token(make_redis_key("alice", limits=limits))
    a, b = await start_pair()
    fake.behaviour.tokens = [f"t{i}" for i in range(10)]
    fake.behaviour.chunk_delay = 0.05
    resp = await a.post("/api/chat", json=CHAT, headers=bearer_auth(token))
    await resp.content.readline()
    for _ in range(3):
        assert await _get(b, token) == HTTPStatus.TOO_MANY_REQUESTS
    await resp.read()

    async def b_admits() -> bool:
        return await _get(b, token) == HTTPStatus.OK

    assert await poll_until(b_admits, within=1.0)  # the slot is free again
    assert await _get(a, token) == HTTPStatus.OK  # the third of three
    assert await _get(a, token) == HTTPStatus.TOO_MANY_REQUESTS


async def test_a_crashed_replicas_slot_frees_when_its_lease_expires(
    start_pair: StartPair,
    make_redis_key: MakeKey,
    redis_overrides: dict[str, Any],
) -> None:
    """A replica gone without settling or renewing: its slot is back after lease_ttl."""
    created = make_redis_key("alice", limits={"concurrent": 1})
    config = load_config(None, {**redis_overrides, "state.lease_ttl": "1s"})
    crashed = SharedAdmission(
        async_client(config.state), config.state.prefix, utc_now, lease_ttl=1.0
    )
    ex = Exchange(
        request_id="r",
        method="GET",
        path="/api/tags",
        client="127.0.0.1",
        started=0.0,
        started_at=utc_now(),
        route_class=RouteClass.MODELS_READ,
    )
    ex.principal = Principal.of(created.record, "bearer")
    ticket = await crashed.admit(KeyLimits(concurrent=1), ex)
    assert isinstance(ticket, SharedTicket)
    assert ticket.admitted
    await crashed.client.aclose()  # gone: never settles, never renews
    a, _ = await start_pair()
    assert await _get(a, _token(created)) == HTTPStatus.TOO_MANY_REQUESTS

    async def admitted() -> bool:
        return await _get(a, _token(created)) == HTTPStatus.OK

    # The lease lives 1 s from its admission; the poll gives it half a second more.
    assert await poll_until(admitted, within=1.0 + 0.5)


async def test_without_redis_a_limited_key_gets_503(
    start_pair: StartPair, make_redis_key: MakeKey, redis_server: RedisServer
) -> None:
    """Limits that cannot be counted are not skipped: 503, never a free pass."""
    token = _token(make_redis_key("alice", limits={"requests_per_minute": 100}))
    free = _token(make_redis_key("bob"))
    a, _ = await start_pair({"state.stale_after": "1h"})
    assert await _get(a, token) == HTTPStatus.OK
    redis_server.stop()
    resp = await a.get("/api/tags", headers=bearer_auth(token))
    assert resp.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert await resp.json() == {"error": "limits unavailable"}
    assert await _get(a, free) == HTTPStatus.OK  # no limits, nothing to count
