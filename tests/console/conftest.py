"""Fixtures of the console tests: a proxy, its admin listener with the console."""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from authproxy.config.load import load_config
from authproxy.console.app import create_admin_listener_app
from authproxy.keys.lifecycle import CreatedKey
from authproxy.web.app import create_app
from tests.support.admin import Stack
from tests.support.auth import bearer_auth
from tests.support.clock import WallClock
from tests.support.console import ConsoleClient
from tests.support.harness import MakeKey, ProxyTestServer
from tests.support.logs import Secrets
from tests.support.payloads import CHAT
from tests.support.polling import poll_until


@pytest.fixture
async def console_stack(
    start_proxy: Any,
    aiohttp_client: AiohttpClient,
    make_key: MakeKey,
    clock: WallClock,
    secrets_seen: Secrets,
) -> Stack:
    """A proxy and its admin listener (API and console) on ``clock``; admin key ops."""
    ops = make_key("ops", scopes=["admin"])
    assert ops.token is not None
    proxy = await start_proxy(clock=clock)
    admin = await aiohttp_client(create_admin_listener_app(proxy.app, clock=clock))
    return Stack(proxy, admin, ops.token, clock, secrets_seen)


@pytest.fixture
def browser(console_stack: Stack) -> ConsoleClient:
    """A signed-out browser on the console of ``console_stack``."""
    return ConsoleClient(console_stack.admin)


@pytest.fixture
async def signed_in(browser: ConsoleClient, console_stack: Stack) -> ConsoleClient:
    """The browser, signed in with the admin key ops."""
    page = await browser.sign_in(console_stack.admin_token)
    assert page.status == 200, page.text
    return browser


@dataclass
class RedisConsole:
    """A proxy and its admin listener on the redis backend, after bob's first chat."""

    proxy: TestClient[Any, Any]
    admin: TestClient[Any, Any]
    ops: CreatedKey
    bob: CreatedKey


@pytest.fixture
async def redis_console(
    redis_overrides: dict[str, Any],
    make_redis_key: MakeKey,
    aiohttp_client: AiohttpClient,
) -> RedisConsole:
    """state.backend redis: admin key ops, key bob, one request of bob's counted."""
    ops = make_redis_key("ops", scopes=["admin"])
    bob = make_redis_key("bob")
    assert ops.token is not None
    assert bob.token is not None
    config = load_config(None, {**redis_overrides, "state.stale_after": 60})
    proxy: TestClient[Any, Any] = await aiohttp_client(
        ProxyTestServer(create_app(config), config)
    )
    admin = await aiohttp_client(create_admin_listener_app(proxy.app))

    async def known() -> bool:
        resp = await proxy.get("/api/tags", headers=bearer_auth(str(bob.token)))
        await resp.read()
        return resp.status == HTTPStatus.OK

    assert await poll_until(known)
    resp = await proxy.post("/api/chat", json=CHAT, headers=bearer_auth(bob.token))
    await resp.read()
    assert resp.status == HTTPStatus.OK
    return RedisConsole(proxy, admin, ops, bob)
