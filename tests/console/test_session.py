"""console.session: sessions in memory and in a real Redis, named by a digest."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

import pytest
import redis.asyncio
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from authproxy.config.load import load_config
from authproxy.config.model import Config
from authproxy.console.app import create_admin_listener_app
from authproxy.console.session import (
    COOKIE,
    MemorySessionStore,
    RedisSessionStore,
    Session,
    SessionStore,
    new_session_id,
)
from authproxy.errors import KeyStoreUnavailableError
from authproxy.web.app import create_app
from tests.support.console import ConsoleClient
from tests.support.harness import MakeKey, ProxyTestServer
from tests.support.redis import RedisServer


async def console_replica(
    aiohttp_client: AiohttpClient, config: Config
) -> TestClient[Any, Any]:
    """A proxy and its admin listener (with the console); the admin client."""
    proxy: TestClient[Any, Any] = await aiohttp_client(
        ProxyTestServer(create_app(config), config)
    )
    return await aiohttp_client(create_admin_listener_app(proxy.app))


def a_session(**kwargs: Any) -> Session:
    """A session signed in at t=1000."""
    values: dict[str, Any] = {
        "actor": "ops",
        "key_id": "k1",
        "created": 1000.0,
        "seen": 1000.0,
        "csrf": "s" * 43,
        **kwargs,
    }
    return Session(**values)


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Any
) -> AsyncIterator[SessionStore]:
    """Each store kind; the Redis one on a real redis-server."""
    if request.param == "memory":
        yield MemorySessionStore()
        return
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        client = redis.asyncio.Redis.from_url(server.url, decode_responses=True)
        shared = RedisSessionStore(client, "test:")
        yield shared
        await shared.close()
    finally:
        server.close()


async def test_a_store_keeps_loads_and_forgets_a_session(store: SessionStore) -> None:
    """save, load (equal), delete (gone); an unknown id is None."""
    sid = new_session_id()
    session = a_session(flash="done", jwt_exp=2000.0)
    await store.save(sid, session, 900)
    assert await store.load(sid) == session
    assert await store.load(new_session_id()) is None
    await store.delete(sid)
    assert await store.load(sid) is None


def test_expiry_idle_absolute_and_jwt() -> None:
    """Idle past the timeout, past max_age since sign-in, or past the JWT's exp."""
    session = a_session(seen=1500.0)
    assert not session.expired(1500.0 + 899, idle=900, max_age=28800)
    assert session.expired(1500.0 + 900, idle=900, max_age=28800)
    assert session.expired(1000.0 + 28800, idle=10**9, max_age=28800)
    assert a_session(jwt_exp=1100.0).expired(1100.0, idle=900, max_age=28800)


def test_a_damaged_stored_session_is_none() -> None:
    """Garbage or a foreign shape in the store is no session."""
    assert Session.from_json("{") is None
    assert Session.from_json("[]") is None
    assert Session.from_json('{"actor": "x"}') is None


def test_session_ids_are_long_and_fresh() -> None:
    """32 random bytes, URL-safe; never twice the same."""
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 43 for i in ids)


async def test_redis_names_a_session_by_the_digest_of_its_id(
    redis_server: RedisServer,
    redis_overrides: dict[str, Any],
    make_redis_key: MakeKey,
    aiohttp_client: AiohttpClient,
) -> None:
    """With state.backend redis the cookie's id is nowhere in Redis, its digest is."""
    ops = make_redis_key("ops", scopes=["admin"])
    config = load_config(None, redis_overrides)
    admin = await console_replica(aiohttp_client, config)
    browser = ConsoleClient(admin)
    assert (await browser.sign_in(ops.token or "")).status == HTTPStatus.OK
    sid = browser.cookie(COOKIE)
    assert sid is not None
    raw = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        names = [str(n) async for n in raw.scan_iter("authproxy:console:session:*")]
        assert names == [
            f"authproxy:console:session:{hashlib.sha256(sid.encode()).hexdigest()}"
        ]
        ttl = await raw.pttl(names[0])
        assert 0 < ttl <= 900_000
        dump = "".join([str(await raw.get(n)) for n in names])
        assert sid not in dump
        # Another replica on the same Redis serves the same browser.
        admin2 = await console_replica(aiohttp_client, config)
        resp = await admin2.get(
            "/admin/ui/keys", cookies={COOKIE: sid}, allow_redirects=False
        )
        assert resp.status == HTTPStatus.OK
    finally:
        await raw.aclose()


async def test_a_redis_outage_is_a_503_page(
    redis_server: RedisServer,
    redis_overrides: dict[str, Any],
    make_redis_key: MakeKey,
    aiohttp_client: AiohttpClient,
) -> None:
    """Redis down: the console says 503 (retry), never 500 or a traceback."""
    ops = make_redis_key("ops", scopes=["admin"])
    config = load_config(None, redis_overrides)
    admin = await console_replica(aiohttp_client, config)
    browser = ConsoleClient(admin)
    assert (await browser.sign_in(ops.token or "")).status == HTTPStatus.OK
    redis_server.kill()
    page = await browser.get("/admin/ui/keys")
    assert page.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert page.headers["Retry-After"] == "1"


async def test_the_redis_store_reports_an_outage() -> None:
    """No server at all: KeyStoreUnavailableError without the URL in it."""
    client = redis.asyncio.Redis.from_url(
        "redis://127.0.0.1:1/0", decode_responses=True, socket_connect_timeout=0.5
    )
    shared = RedisSessionStore(client, "x:")
    with pytest.raises(KeyStoreUnavailableError) as err:
        await shared.load("id")
    assert "127.0.0.1" not in str(err.value)
    await shared.close()


async def test_the_memory_store_drops_its_oldest_sessions_past_its_bound() -> None:
    """A bounded dict: past its limit the least recently saved goes first."""
    store = MemorySessionStore(limit=3)
    ids = [new_session_id() for _ in range(4)]
    for sid in ids[:3]:
        await store.save(sid, a_session(), 900)
    await store.save(ids[0], a_session(flash="used"), 900)  # refreshed: now newest
    await store.save(ids[3], a_session(), 900)
    assert await store.load(ids[1]) is None
    assert [await store.load(s) is not None for s in (ids[0], ids[2], ids[3])] == [
        True,
        True,
        True,
    ]
