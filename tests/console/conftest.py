"""Fixtures of the console tests: a proxy, its admin listener with the console."""

from __future__ import annotations

from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from authproxy.console.app import create_admin_listener_app
from tests.support.admin import Stack
from tests.support.clock import WallClock
from tests.support.console import ConsoleClient
from tests.support.harness import MakeKey
from tests.support.logs import Secrets


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
