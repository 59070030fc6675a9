"""limits.admission: tokens reserved at admission, settled when the request ends."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from authproxy.limits.admission import token_estimate
from authproxy.limits.quotas import KeyLimiter
from authproxy.metering.exchange import Exchange
from authproxy.policy.routes import RouteClass
from authproxy.web.appkeys import KEY_LIMITS_KEY
from tests.support.audit import read_audit, wait_audit
from tests.support.clock import WallClock
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import MakeKey
from tests.support.payloads import CHAT
from tests.support.polling import poll_until
from tests.support.rawhttp import closed_port

# The fake reports prompt_eval_count 26 and eval_count 4 for every chat.
REAL_COUNT = 30


# "hi" is two characters: a prompt estimate of one token.
PROMPT_ESTIMATE = 1


NOON = datetime.fromisoformat("2026-11-10T12:00:00+00:00")


@pytest.mark.parametrize(
    ("route", "prompt", "cap", "expected"),
    [
        (RouteClass.INFERENCE, 10, 100, 110),
        (RouteClass.INFERENCE, 10, None, 10 + 4096),
        (RouteClass.EMBEDDINGS, 10, None, 10),
        (RouteClass.EMBEDDINGS, 0, None, 1),
    ],
    ids=["cap", "default", "embeddings", "at-least-one"],
)
def test_token_estimate(route, prompt, cap, expected) -> None:
    """The estimate is the prompt plus the cap, the default, or nothing to embed."""
    ex = Exchange(
        request_id="r",
        method="POST",
        path="/api/chat",
        client="127.0.0.1",
        started=0.0,
        started_at=NOON,
        route_class=route,
    )
    ex.prompt_estimate, ex.max_output = prompt, cap
    assert token_estimate(ex, 4096) == expected


async def statuses_of(responses: list[Any]) -> list[int]:
    for resp in responses:
        await resp.read()
    return [resp.status for resp in responses]


async def settled(limiter: KeyLimiter, key_id: str) -> None:
    """Wait until no request of the key holds tokens (the server may lag the client)."""
    await poll_until(lambda: limiter.reserved(key_id) == 0)
    assert limiter.reserved(key_id) == 0


@pytest.mark.parametrize(
    ("limit", "reason"),
    [("tokens_per_day", "day"), ("tokens_per_month", "month")],
)
async def test_parallel_requests_cannot_overshoot(
    start_proxy, make_key: MakeKey, fake: FakeOllama, audit_path: Path, limit, reason
) -> None:
    """15 parallel requests on a 20-token key: one is served, 14 get 429."""
    limited = make_key("quota", limits={limit: 20})
    client = await start_proxy(clock=WallClock(NOON))
    auth = {"Authorization": f"Bearer {limited.token}"}
    fake.behaviour.header_delay = 0.3  # keep the admitted one in flight
    responses = await asyncio.gather(
        *(client.post("/api/chat", json=CHAT, headers=auth) for _ in range(15))
    )
    statuses = await statuses_of(responses)
    assert sorted(statuses) == [200] + [429] * 14
    assert len(fake.received) == 1
    refused = next(r for r in responses if r.status == 429)
    assert await refused.json() == {"error": f"token quota of 20 per {reason} used up"}
    expected = {"day": 12 * 3600, "month": 20 * 86400 + 12 * 3600}[reason]
    assert refused.headers["Retry-After"] == str(expected)
    assert refused.headers["X-RateLimit-Limit"] == "20"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    limiter = client.app[KEY_LIMITS_KEY]
    await settled(limiter, limited.record.id)
    assert limiter.usage(limited.record.id) == (REAL_COUNT, REAL_COUNT)
    records = await wait_audit(audit_path, 15)
    denied = [r for r in records if r["outcome"] == "denied"]
    assert {r["reason"] for r in denied} == {f"token_quota_{reason}"}
    assert len(denied) == 14
    assert sum(r["total_tokens"] for r in records) == REAL_COUNT


@pytest.mark.parametrize(
    ("path", "body", "reserved", "charged"),
    [
        ("/api/chat", {**CHAT, "options": {"num_predict": 100}}, 100, REAL_COUNT),
        # Without include_usage the stream has no counts: prompt estimate
        # plus one token per content chunk.
        (
            "/v1/chat/completions",
            {**CHAT, "stream": True, "max_tokens": 70},
            70,
            PROMPT_ESTIMATE + 10,
        ),
        ("/api/chat", CHAT, 50, REAL_COUNT),  # limits.default_output_reservation
    ],
    ids=["num_predict", "max_tokens", "default"],
)
async def test_a_request_reserves_its_output_cap(
    start_proxy, make_key: MakeKey, fake: FakeOllama, path, body, reserved, charged
) -> None:
    """A running request holds its prompt estimate plus its output cap."""
    limited = make_key("quota", limits={"tokens_per_day": 1000})
    client = await start_proxy({"limits.default_output_reservation": 50})
    auth = {"Authorization": f"Bearer {limited.token}"}
    fake.behaviour.tokens = [f"t{i}" for i in range(10)]
    fake.behaviour.chunk_delay = 0.05
    limiter = client.app[KEY_LIMITS_KEY]
    resp = await client.post(path, json=body, headers=auth)
    await resp.content.readline()
    assert limiter.reserved(limited.record.id) == PROMPT_ESTIMATE + reserved
    await resp.read()
    await settled(limiter, limited.record.id)
    assert limiter.usage(limited.record.id) == (charged, charged)


async def test_a_reservation_leaves_room_for_others_below_the_quota(
    start_proxy, make_key: MakeKey, fake: FakeOllama
) -> None:
    """Others are admitted while used plus reserved stays below the quota."""
    limited = make_key("quota", limits={"tokens_per_day": 150})
    client = await start_proxy()
    auth = {"Authorization": f"Bearer {limited.token}"}
    fake.behaviour.tokens = [f"t{i}" for i in range(10)]
    fake.behaviour.chunk_delay = 0.05
    capped = {**CHAT, "options": {"num_predict": 100}}
    first = await client.post("/api/chat", json=capped, headers=auth)
    await first.content.readline()
    second = await client.post("/api/chat", json=capped, headers=auth)  # 101 < 150
    await second.content.readline()
    third = await client.post("/api/chat", json=capped, headers=auth)  # 202 >= 150
    assert third.status == 429
    assert (await statuses_of([first, second])) == [200, 200]
    await settled(client.app[KEY_LIMITS_KEY], limited.record.id)
    assert client.app[KEY_LIMITS_KEY].usage(limited.record.id) == (60, 60)


async def test_upstream_failures_release_the_reservation(
    start_proxy, make_key: MakeKey, fake: FakeOllama
) -> None:
    """A 502 (unreachable upstream) or an upstream error status charges nothing."""
    limited = make_key("quota", limits={"tokens_per_day": 20})
    auth = {"Authorization": f"Bearer {limited.token}"}
    down = await start_proxy({"upstream.url": f"http://127.0.0.1:{closed_port()}"})
    assert (await down.post("/api/chat", json=CHAT, headers=auth)).status == 502
    assert down.app[KEY_LIMITS_KEY].reserved(limited.record.id) == 0
    assert down.app[KEY_LIMITS_KEY].usage(limited.record.id) == (0, 0)
    client = await start_proxy()
    fake.behaviour.status = 500
    assert (await client.post("/api/chat", json=CHAT, headers=auth)).status == 500
    limiter = client.app[KEY_LIMITS_KEY]
    assert (limiter.reserved(limited.record.id), limiter.usage(limited.record.id)) == (
        0,
        (0, 0),
    )
    fake.behaviour.status = None
    assert (await client.post("/api/chat", json=CHAT, headers=auth)).status == 200
    await settled(limiter, limited.record.id)
    assert limiter.usage(limited.record.id) == (REAL_COUNT, REAL_COUNT)


async def test_denied_requests_reserve_nothing(
    start_proxy, make_key: MakeKey, fake: FakeOllama
) -> None:
    """The model policy is decided before the reservation: its 403 holds nothing."""
    limited = make_key("quota", models=["qwen3:*"], limits={"tokens_per_day": 20})
    client = await start_proxy()
    auth = {"Authorization": f"Bearer {limited.token}"}
    fake.behaviour.header_delay = 0.3
    limiter = client.app[KEY_LIMITS_KEY]
    served = asyncio.ensure_future(
        client.post("/api/chat", json={**CHAT, "model": "qwen3:8b"}, headers=auth)
    )
    await poll_until(lambda: fake.received)
    held = limiter.reserved(limited.record.id)
    denied = await client.post("/api/chat", json=CHAT, headers=auth)
    assert denied.status == 403  # not 429: the quota is full of reservations
    assert limiter.reserved(limited.record.id) == held == PROMPT_ESTIMATE + 4096
    assert (await statuses_of([await served])) == [200]
    await settled(limiter, limited.record.id)
    assert limiter.usage(limited.record.id) == (REAL_COUNT, REAL_COUNT)


async def test_a_client_that_leaves_releases_its_reservation(
    start_proxy, make_key: MakeKey, fake: FakeOllama, audit_path: Path
) -> None:
    """A disconnect mid-stream settles to the estimate of what was generated."""
    limited = make_key("quota", limits={"tokens_per_day": 10_000})
    client = await start_proxy()
    auth = {"Authorization": f"Bearer {limited.token}"}
    fake.behaviour.tokens = [f"t{i}" for i in range(100)]
    fake.behaviour.chunk_delay = 0.05
    limiter = client.app[KEY_LIMITS_KEY]
    resp = await client.post("/api/chat", json=CHAT, headers=auth)
    await resp.content.readline()
    assert limiter.reserved(limited.record.id) == PROMPT_ESTIMATE + 4096
    resp.close()
    await poll_until(lambda: read_audit(audit_path))
    [record] = read_audit(audit_path)
    assert record["outcome"] == "client_disconnected"
    assert limiter.reserved(limited.record.id) == 0
    assert limiter.usage(limited.record.id) == (record["total_tokens"],) * 2
    assert record["total_tokens"] > 0


async def test_unmetered_routes_neither_reserve_nor_get_refused(
    start_proxy, make_key: MakeKey, fake: FakeOllama
) -> None:
    """Listing models uses no tokens, so a used-up quota does not refuse it."""
    limited = make_key("quota", limits={"tokens_per_day": 20})
    client = await start_proxy()
    auth = {"Authorization": f"Bearer {limited.token}"}
    limiter = client.app[KEY_LIMITS_KEY]
    assert (await client.post("/api/chat", json=CHAT, headers=auth)).status == 200
    await settled(limiter, limited.record.id)
    assert (await client.post("/api/chat", json=CHAT, headers=auth)).status == 429
    assert (await client.get("/api/tags", headers=auth)).status == 200
    assert limiter.usage(limited.record.id) == (REAL_COUNT, REAL_COUNT)
    assert limiter.reserved(limited.record.id) == 0


async def test_keys_without_limits_are_not_tracked(proxy, bearer, key) -> None:
    """Unlimited keys skip the limiter entirely."""
    await (await proxy.post("/api/chat", json=CHAT, headers=bearer)).read()
    assert proxy.app[KEY_LIMITS_KEY]._keys == {}
