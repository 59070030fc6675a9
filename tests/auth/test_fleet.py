"""auth.fleet: failed authentications counted for all replicas sharing Redis."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from authproxy.config.load import load_config
from authproxy.web.app import create_app
from authproxy.web.appkeys import BRUTE_FORCE_KEY
from tests.support.auth import UNKNOWN_TOKEN, bearer_auth
from tests.support.harness import MakeKey, ProxyTestServer
from tests.support.polling import poll_until

Client = TestClient[Any, Any]
THRESHOLD = 4


async def _pair(
    aiohttp_client: AiohttpClient, overrides: dict[str, Any]
) -> tuple[Client, Client]:
    clients: list[Client] = []
    for _ in range(2):
        config = load_config(None, overrides)
        clients.append(
            await aiohttp_client(ProxyTestServer(create_app(config), config))
        )
    return clients[0], clients[1]


async def _status(client: Client, token: str) -> int:
    resp = await client.get("/api/tags", headers=bearer_auth(token))
    await resp.read()
    return resp.status


async def test_failures_on_two_replicas_add_up_to_one_block(
    aiohttp_client: AiohttpClient,
    redis_overrides: dict[str, Any],
    make_redis_key: MakeKey,
) -> None:
    """Two failures on A and two on B block the client on both: the fleet's count."""
    token = make_redis_key("alice").token
    assert token is not None
    overrides = {**redis_overrides, "limits.auth_failures": THRESHOLD}
    a, b = await _pair(aiohttp_client, overrides)
    for client in (a, a, b):
        assert await _status(client, UNKNOWN_TOKEN) == HTTPStatus.UNAUTHORIZED
    # Neither replica has reached the threshold on its own (2 and 1).
    assert a.app[BRUTE_FORCE_KEY].blocks == 0
    assert await _status(b, UNKNOWN_TOKEN) == HTTPStatus.UNAUTHORIZED

    limiter = a.app[BRUTE_FORCE_KEY]
    # Poll A's state, not A itself: a refused request would count as a failure.
    assert await poll_until(lambda: limiter.retry_after("127.0.0.1") is not None)
    for client in (a, b):
        assert await _status(client, UNKNOWN_TOKEN) == HTTPStatus.TOO_MANY_REQUESTS
    assert a.app[BRUTE_FORCE_KEY].blocks == 0  # A blocked because B's count did


async def test_a_replica_alone_keeps_its_own_count(
    aiohttp_client: AiohttpClient,
    redis_overrides: dict[str, Any],
    redis_server: Any,
    make_redis_key: MakeKey,
) -> None:
    """With Redis gone, a replica still blocks at the threshold on its own."""
    make_redis_key("alice")
    overrides = {
        **redis_overrides,
        "limits.auth_failures": THRESHOLD,
        "state.stale_after": "1h",
    }
    config = load_config(None, overrides)
    proxy: Client = await aiohttp_client(ProxyTestServer(create_app(config), config))
    redis_server.stop()
    statuses = [await _status(proxy, UNKNOWN_TOKEN) for _ in range(THRESHOLD + 1)]
    assert statuses[-1] == HTTPStatus.TOO_MANY_REQUESTS
