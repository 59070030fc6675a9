"""server.fastroute: the shortcut past aiohttp's router answers as aiohttp would.

Two proxies on the same config and the same fake Ollama, one with the shortcut
(as served) and one routed by aiohttp itself, are sent the same raw requests;
every answer, and what reached Ollama, must be the same.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from authproxy.admin.app import create_admin_app
from authproxy.config.model import Config
from authproxy.server.fastroute import catch_all_handler
from authproxy.web.app import create_app
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import ProxyTestServer
from tests.support.rawhttp import build_request, comparable, exchange


@pytest.fixture
async def pair(config: Config, key: Any) -> Any:
    """(shortcut server, aiohttp-routed server), both started."""
    # The shortcut, and aiohttp resolving every request; both without the
    # lean front, which would take the shortcut's requests itself.
    servers = [
        ProxyTestServer(create_app(config), config, lean_front=False),
        ProxyTestServer(create_app(config), config, lean_front=False, fast_route=False),
    ]
    for server in servers:
        await server.start_server()
    yield servers
    for server in servers:
        await server.close()


def _requests(token: str) -> list[bytes]:
    auth = f"Authorization: Bearer {token}"
    chat = json.dumps({"model": "llama3.2", "messages": [], "stream": False}).encode()
    sized = f"Content-Length: {len(chat)}"
    return [
        build_request(auth),
        build_request(auth, target="/api/tags?x=1"),
        build_request(
            auth,
            "Content-Type: application/json",
            sized,
            method="POST",
            target="/api/chat",
            body=chat,
        ),
        build_request(target="/healthz"),
        build_request(target="/readyz"),
        build_request(auth, method="POST", target="/healthz"),  # to the catch-all
        build_request(auth, target="/healthz/"),
        build_request(auth, target="/api/tags%0A"),  # "." stops at a newline
        build_request(auth, target="/a%2Fb%25c"),
        build_request(auth, target="http://proxy/api/tags"),  # absolute form
        build_request(target="/api/tags"),  # no credential
        build_request(auth, method="OPTIONS", target="*"),
        build_request(
            auth,
            "Expect: 100-continue",
            "Content-Type: application/json",
            sized,
            method="POST",
            target="/api/chat",
            body=chat,
        ),
    ]


async def test_answers_and_upstream_requests_match_aiohttps_routing(
    pair: list[TestServer], token: str, fake: FakeOllama
) -> None:
    """Every request gets the same answer, and Ollama the same request, both ways."""
    fast, routed = pair
    for request in _requests(token):
        before = len(fake.received)
        by_shortcut = comparable(await exchange(fast.port, request))
        reached = [(r.method, r.path_qs, r.body) for r in fake.received[before:]]
        del fake.received[before:]
        by_aiohttp = comparable(await exchange(routed.port, request))
        reached_routed = [(r.method, r.path_qs, r.body) for r in fake.received[before:]]
        assert by_shortcut == by_aiohttp, request
        assert reached == reached_routed, request


async def test_the_served_proxy_takes_the_shortcut(pair: list[TestServer]) -> None:
    """The proxy's runner serves through the shortcut; the other routes by aiohttp."""
    fast, routed = pair
    assert fast.runner is not None
    assert routed.runner is not None
    assert fast.runner.server is not None
    assert routed.runner.server is not None
    assert fast.runner.server.request_handler.__name__ == "handle"
    assert routed.runner.server.request_handler == routed.app._handle


def test_apps_of_another_shape_keep_aiohttps_routing(config: Config) -> None:
    """The admin API's routes are not plain paths plus one catch-all: no shortcut."""
    admin = create_admin_app(create_app(config))
    admin.freeze()
    assert catch_all_handler(admin) is None

    async def ok(_request: web.Request) -> web.Response:
        return web.Response()

    nested = web.Application()
    nested.router.add_route("*", "/{tail:.*}", ok)
    nested.router.add_get("/items/{id}", ok)
    nested.freeze()
    assert catch_all_handler(nested) is None
