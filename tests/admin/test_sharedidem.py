"""admin.sharedidem: a retried admin action gets the same reply on any replica.

Two real proxies with their admin APIs share one real ``redis-server``
(``state.backend: redis``); a third cache on the same Redis stands for a
replica in the middle of an action.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import pytest
import redis

from authproxy.admin.idempotency import Reply, Slot, body_digest
from authproxy.admin.sharedidem import SharedIdempotency
from authproxy.config.load import load_config
from authproxy.state.connection import async_client
from tests.support.admin import Stack
from tests.support.harness import MakeKey, StartReplica
from tests.support.redis import RedisServer


@dataclass
class Pair:
    """Two replicas sharing one Redis, and a raw client on it."""

    a: Stack
    b: Stack
    overrides: dict[str, Any]
    raw: redis.Redis


@pytest.fixture
async def pair(
    start_replica: StartReplica,
    redis_overrides: dict[str, Any],
    redis_server: RedisServer,
    make_redis_key: MakeKey,
) -> AsyncIterator[Pair]:
    """Two replicas, an admin key named ops and a key named alice, in one Redis."""
    ops = make_redis_key("ops", scopes=["admin"])
    make_redis_key("alice")
    assert ops.token is not None
    a = await start_replica(redis_overrides, ops.token)
    b = await start_replica(redis_overrides, ops.token)
    raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield Pair(a, b, redis_overrides, raw)
    raw.close()


def _version(pair: Pair) -> int:
    return int(pair.raw.get("authproxy:keys:version") or 0)


async def test_a_retried_rotation_returns_the_same_token_on_the_other_replica(
    pair: Pair,
) -> None:
    """Rotate on A, retry on B: B replays A's reply, and the key rotated once."""
    headers = {"Idempotency-Key": "7d1c5a0e-rotate"}
    before = _version(pair)
    first = await pair.a.api(
        "POST", "/admin/keys/alice/rotate", {"grace": "1h"}, headers=headers
    )
    second = await pair.b.api(
        "POST", "/admin/keys/alice/rotate", {"grace": "1h"}, headers=headers
    )
    assert first[0] == HTTPStatus.OK
    assert first == second
    assert _version(pair) == before + 1
    other = await pair.b.api(
        "POST",
        "/admin/keys/alice/rotate",
        {"grace": "1h"},
        headers={"Idempotency-Key": "7d1c5a0e-other"},
    )
    assert other[1]["token"] != first[1]["token"]


async def test_the_same_key_with_another_body_is_refused_on_the_other_replica(
    pair: Pair,
) -> None:
    """A key reused on B with another body is 409, as on one proxy."""
    headers = {"Idempotency-Key": "reuse-across"}
    status, _ = await pair.a.api(
        "POST", "/admin/keys", {"name": "carol"}, headers=headers
    )
    assert status == HTTPStatus.CREATED
    status, body = await pair.b.api(
        "POST", "/admin/keys", {"name": "dave"}, headers=headers
    )
    assert (status, body) == (
        HTTPStatus.CONFLICT,
        {"error": "Idempotency-Key reused with another request"},
    )
    status, _ = await pair.b.api("GET", "/admin/keys/dave")
    assert status == HTTPStatus.NOT_FOUND


async def test_identical_creates_at_once_on_two_replicas_make_one_key(
    pair: Pair,
) -> None:
    """The same create sent to A and B at once makes one key; both get its token."""
    headers = {"Idempotency-Key": "same-time"}
    before = _version(pair)
    one, two = await asyncio.gather(
        pair.a.api("POST", "/admin/keys", {"name": "erin"}, headers=headers),
        pair.b.api("POST", "/admin/keys", {"name": "erin"}, headers=headers),
    )
    assert one[0] == HTTPStatus.CREATED
    assert one == two
    assert _version(pair) == before + 1


async def test_redis_holds_neither_the_token_nor_the_idempotency_key(
    pair: Pair,
) -> None:
    """Every name and value in Redis after a create: no token, no Idempotency-Key."""
    given = "b0f3e1de-8d5c-4f0e-9a51-secret-idem"
    status, body = await pair.a.api(
        "POST", "/admin/keys", {"name": "frank"}, headers={"Idempotency-Key": given}
    )
    assert status == HTTPStatus.CREATED
    token = body["token"]
    secret = token.rsplit("_", 1)[-1]
    raw: Any = pair.raw  # decode_responses: every reply is text
    dump: list[str] = []
    for name in raw.scan_iter("*"):
        dump.append(name)
        kind = raw.type(name)
        if kind == "string":
            dump.append(raw.get(name) or "")
        elif kind == "hash":
            dump.extend(f"{k}={v}" for k, v in raw.hgetall(name).items())
        elif kind == "stream":
            dump.extend(str(e) for e in raw.xrange(name))
        else:
            dump.append(repr(raw.dump(name)))
    entries = [n for n in dump if ":admin:idempotency:" in n]
    assert len(entries) == 1, "the reply is not in Redis"
    for text in dump:
        assert token not in text
        assert secret not in text
        assert given not in text
    assert pair.raw.pttl(entries[0]) > 0, "the reply never expires"


def _slot(action: str, ref: str, given: str, body: dict[str, Any]) -> Slot:
    return Slot("ops", action, ref, given, body_digest(body))


async def test_a_retry_waits_for_a_try_running_on_another_replica(
    pair: Pair,
) -> None:
    """A retry on A while another replica runs the same action gets that reply."""
    config = load_config(None, pair.overrides)
    elsewhere = SharedIdempotency(async_client(config.state), "authproxy:", 60.0)
    body = {"grace": "1h"}
    slot = _slot("rotate", "alice", "in-flight", body)
    assert await elsewhere.claim(slot) is None
    retry = asyncio.create_task(
        pair.a.api(
            "POST",
            "/admin/keys/alice/rotate",
            body,
            headers={"Idempotency-Key": "in-flight"},
        )
    )
    await asyncio.sleep(0.2)  # let it find the claim; either order ends the same
    await elsewhere.keep(slot, Reply(200, b'{"token": "from-elsewhere"}'))
    assert await retry == (HTTPStatus.OK, {"token": "from-elsewhere"})
    await elsewhere.close()


async def test_a_retry_is_refused_while_the_first_try_never_answers(
    pair: Pair,
) -> None:
    """A claim held past the wait is a 409 "in progress"; once released, it runs."""
    config = load_config(None, pair.overrides)
    elsewhere = SharedIdempotency(async_client(config.state), "authproxy:", 60.0)
    body = {"name": "gina"}
    slot = _slot("create", "", "stuck", body)
    assert await elsewhere.claim(slot) is None
    resp = await pair.b.admin.post(
        "/admin/keys",
        json=body,
        headers={
            "Authorization": f"Bearer {pair.b.admin_token}",
            "Idempotency-Key": "stuck",
        },
    )
    assert resp.status == HTTPStatus.CONFLICT
    assert resp.headers["Retry-After"] == "1"
    assert await resp.json() == {
        "error": "a request with this Idempotency-Key is still in progress; retry later"
    }
    await elsewhere.release(slot)
    await elsewhere.close()
    status, created = await pair.b.api(
        "POST", "/admin/keys", body, headers={"Idempotency-Key": "stuck"}
    )
    assert status == HTTPStatus.CREATED
    assert created["name"] == "gina"


async def test_a_failed_try_gives_its_claim_back(pair: Pair) -> None:
    """A rotation of an unknown key fails (404) and a retry runs again, not 409."""
    headers = {"Idempotency-Key": "missing-key"}
    for _ in range(2):
        status, body = await pair.a.api(
            "POST", "/admin/keys/nobody/rotate", {}, headers=headers
        )
        assert (status, body) == (HTTPStatus.NOT_FOUND, {"error": "key not found"})
