"""web.keys: the verifier and the watcher set up in the proxy application."""

from __future__ import annotations

import asyncio
import os
from http import HTTPStatus

from authproxy.config.load import load_config
from authproxy.keys.backend import key_backend
from authproxy.keys.lifecycle import KeySpec, create_key
from authproxy.keys.store import make_hasher
from authproxy.times import utc_now
from authproxy.web.appkeys import VERIFIER_KEY
from tests.support.auth import bearer_auth
from tests.support.polling import poll_until


async def test_argon2_workers_default_to_the_usable_cpus(start_proxy) -> None:
    """Without keys.verify_workers, one argon2 thread per CPU this process may use."""
    client = await start_proxy({})
    assert client.app[VERIFIER_KEY].workers == len(os.sched_getaffinity(0))
    client = await start_proxy({"keys.verify_workers": 3})
    assert client.app[VERIFIER_KEY].workers == 3


async def test_a_replica_started_while_redis_is_down_serves_once_it_is_up(
    start_proxy, redis_overrides, redis_server, secrets_seen
) -> None:
    """No Redis at start: the proxy starts, refuses with 503, then serves."""
    config = load_config(None, redis_overrides)
    created = create_key(
        key_backend(config).store,
        make_hasher(config.keys.argon2),
        KeySpec(name="alice"),
        now=utc_now(),
    )
    secrets_seen.add(created.token)
    redis_server.stop()
    client = await start_proxy(redis_overrides)
    resp = await client.get("/api/tags", headers=bearer_auth(created.token))
    assert resp.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert await resp.json() == {"error": "key store unavailable"}
    ready = await client.get("/readyz")
    assert (await ready.json())["detail"] == "Redis unreachable"
    await asyncio.to_thread(redis_server.start)

    async def serves() -> bool:
        resp = await client.get("/api/tags", headers=bearer_auth(created.token))
        return bool(resp.status == HTTPStatus.OK)

    assert await poll_until(serves, within=5.0)
