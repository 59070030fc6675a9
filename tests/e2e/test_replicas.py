"""Replicas sharing one Redis: keys from anywhere, revocation everywhere, no fallback.

Two real proxy applications on real sockets, each with its admin API, follow
the key table in one real ``redis-server`` (``state.backend: redis``).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from authproxy.admin.app import create_admin_app
from authproxy.config.load import load_config
from authproxy.keys.feed import NOT_INITIALISED
from authproxy.web.app import create_app
from authproxy.web.appkeys import VERIFIER_KEY
from tests.support.admin import Stack
from tests.support.auth import bearer_auth
from tests.support.cli import run
from tests.support.clock import WallClock
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import MakeKey, ProxyTestServer, StartReplica, nested
from tests.support.logs import Secrets
from tests.support.payloads import CHAT
from tests.support.polling import poll_until
from tests.support.redis import RedisServer
from tests.support.serving import ServeProcess

# The bound: a change on one replica is in force on every replica
# within a second. Polls stop there, so a slower replica fails the test.
PROPAGATION: Final = 1.0
# Scheduling slack on a shared two-core machine, added to stale_after only.
SLACK: Final = 0.25


@dataclass
class Replicas:
    """Two proxies, each with its admin API, sharing one Redis."""

    a: Stack
    b: Stack
    overrides: dict[str, Any]
    redis: RedisServer


@pytest.fixture
async def replicas(
    start_replica: StartReplica,
    redis_overrides: dict[str, Any],
    redis_server: RedisServer,
    make_redis_key: MakeKey,
) -> Replicas:
    """Two replicas and an admin key named ops, all in one Redis."""
    ops = make_redis_key("ops", scopes=["admin"])
    assert ops.token is not None
    a = await start_replica(redis_overrides, ops.token)
    b = await start_replica(redis_overrides, ops.token)
    return Replicas(a, b, redis_overrides, redis_server)


async def _status(client: TestClient[Any, Any], token: str) -> int:
    resp = await client.get("/api/tags", headers=bearer_auth(token))
    await resp.read()
    return resp.status


async def _until(check: Callable[[], Awaitable[bool]], within: float) -> bool:
    return await poll_until(check, within=within)


async def test_a_key_created_on_one_replica_works_on_the_other(
    replicas: Replicas,
) -> None:
    """A key made through replica A's admin API authenticates on replica B."""
    status, body = await replicas.a.api("POST", "/admin/keys", {"name": "carol"})
    assert status == HTTPStatus.CREATED
    token = body["token"]

    async def b_accepts() -> bool:
        return await _status(replicas.b.proxy, token) == HTTPStatus.OK

    assert await _until(b_accepts, PROPAGATION), "replica B never took the new key"


async def test_a_revoke_on_one_replica_is_refused_by_the_other_within_a_second(
    replicas: Replicas, make_redis_key: MakeKey
) -> None:
    """B refuses a key revoked through A's admin API, though B had it cached."""
    token = make_redis_key("dave").token
    assert token is not None
    b = replicas.b.proxy
    assert await _until(lambda: _accepts(b, token), PROPAGATION)
    hits = b.app[VERIFIER_KEY].stats.cache_hits
    assert await _status(b, token) == HTTPStatus.OK
    assert b.app[VERIFIER_KEY].stats.cache_hits == hits + 1, "B's cache is not warm"

    status, body = await replicas.a.api("POST", "/admin/keys/dave/revoke")
    assert status == HTTPStatus.OK
    assert body["changed"] is True

    async def b_refuses() -> bool:
        return await _status(b, token) == HTTPStatus.UNAUTHORIZED

    assert await _until(b_refuses, PROPAGATION), "B still accepts the revoked key"


async def _accepts(client: TestClient[Any, Any], token: str) -> bool:
    return await _status(client, token) == HTTPStatus.OK


async def test_without_redis_every_replica_refuses_until_it_returns(
    replicas: Replicas, make_redis_key: MakeKey
) -> None:
    """Redis down: 503 "key store unavailable" within stale_after, then service."""
    token = make_redis_key("erin").token
    assert token is not None
    clients = [replicas.a.proxy, replicas.b.proxy]
    for client in clients:
        assert await _until(functools.partial(_accepts, client, token), PROPAGATION)

    replicas.redis.stop()
    stale_after = replicas.overrides["state.stale_after"]

    async def all_refuse() -> bool:
        for client in clients:
            resp = await client.get("/api/tags", headers=bearer_auth(token))
            body = await resp.json()
            if resp.status != HTTPStatus.SERVICE_UNAVAILABLE:
                return False
            assert body == {"error": "key store unavailable"}
        return True

    assert await _until(all_refuse, stale_after + SLACK), "a replica kept serving"
    ready = await replicas.b.proxy.get("/readyz")
    assert ready.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert (await ready.json())["error"] == "key store unavailable"
    status, body = await replicas.b.api("GET", "/admin/keys")
    assert (status, body) == (503, {"error": "key store unavailable"})

    await asyncio.to_thread(replicas.redis.start)

    async def all_serve() -> bool:
        for client in clients:
            if not await _accepts(client, token):
                return False
        return True

    assert await _until(all_serve, 5.0), "service did not come back with Redis"


async def test_an_admin_write_while_redis_is_down_is_a_503(
    aiohttp_client: AiohttpClient,
    redis_overrides: dict[str, Any],
    redis_server: RedisServer,
    make_redis_key: MakeKey,
    secrets_seen: Secrets,
) -> None:
    """Within stale_after the admin key still passes, but the write answers 503."""
    ops = make_redis_key("ops", scopes=["admin"])
    assert ops.token is not None
    config = load_config(None, {**redis_overrides, "state.stale_after": "1h"})
    proxy: TestClient[Any, Any] = await aiohttp_client(
        ProxyTestServer(create_app(config), config)
    )
    admin = await aiohttp_client(create_admin_app(proxy.app))
    stack = Stack(proxy, admin, ops.token, WallClock(), secrets_seen)
    assert (await stack.api("GET", "/admin/keys"))[0] == HTTPStatus.OK
    redis_server.stop()
    resp = await admin.post(
        "/admin/keys",
        json={"name": "frank"},
        headers=bearer_auth(ops.token),
    )
    assert resp.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert await resp.json() == {"error": "key store unavailable"}
    assert resp.headers["Retry-After"] == "1"


async def test_a_replica_killed_with_kill_9_frees_its_slots_by_lease_expiry(
    replicas: Replicas,
    make_redis_key: MakeKey,
    tmp_path: Path,
    fake: FakeOllama,
) -> None:
    """`authproxy serve` holding a key's one slot dies by SIGKILL; the slot frees."""
    lease_ttl = 2.0
    token = make_redis_key("grace", limits={"concurrent": 1}).token
    assert token is not None
    config = {
        **replicas.overrides,
        "state.lease_ttl": lease_ttl,
        "audit.file": str(tmp_path / "killed" / "usage.jsonl"),
        "audit.admin_file": str(tmp_path / "killed" / "admin.jsonl"),
        "admin.listen": "",
        "log.format": "json",
    }
    victim = await ServeProcess.spawn(config, tmp_path / "killed.yaml")
    try:
        await victim.until_started()
        fake.behaviour.tokens = [f"t{i}" for i in range(100)]
        fake.behaviour.chunk_delay = 0.2
        async with aiohttp.ClientSession() as session:
            resp = await session.post(
                f"{victim.url}/api/chat", json=CHAT, headers=bearer_auth(token)
            )
            assert resp.status == HTTPStatus.OK
            await resp.content.readline()  # admitted: it holds the slot
            victim.proc.kill()
            await victim.proc.wait()
            resp.close()
    finally:
        if victim.proc.returncode is None:
            victim.proc.kill()
            await victim.proc.wait()
    fake.behaviour.chunk_delay = 0.0
    survivor = replicas.b.proxy
    assert await _status(survivor, token) == HTTPStatus.TOO_MANY_REQUESTS

    async def slot_free() -> bool:
        return await _accepts(survivor, token)

    # The lease lives lease_ttl from its last renewal; half a second of slack.
    assert await _until(slot_free, lease_ttl + 0.5), "the dead replica's slot stayed"


async def test_a_redis_killed_and_back_empty_stays_refused_until_an_import(
    replicas: Replicas,
    make_redis_key: MakeKey,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """kill -9 without persistence: the keys are gone, so no replica serves them.

    The replicas refuse (503) rather than take the empty server as an empty
    store; `authproxy keys import` of an earlier export brings service back.
    """
    token = make_redis_key("heidi").token
    assert token is not None
    b = replicas.b.proxy
    assert await _until(functools.partial(_accepts, b, token), PROPAGATION)
    config_file = tmp_path / "cli.yaml"
    config_file.write_text(yaml.safe_dump(nested(replicas.overrides)))
    backup = tmp_path / "backup.yaml"
    code, _, _ = run(
        capsys, "keys", "export", str(backup), "--config", str(config_file)
    )
    assert code == 0

    replicas.redis.kill()
    await asyncio.to_thread(replicas.redis.start)  # empty: no persistence

    async def missing() -> bool:
        ready = await b.get("/readyz")
        return bool((await ready.json()).get("detail") == NOT_INITIALISED)

    assert await _until(missing, replicas.overrides["state.stale_after"] + 5.0)
    assert await _status(b, token) == HTTPStatus.SERVICE_UNAVAILABLE

    code, _, _ = await asyncio.to_thread(
        run, capsys, "keys", "import", str(backup), "--config", str(config_file)
    )
    assert code == 0
    assert await _until(functools.partial(_accepts, b, token), PROPAGATION)
