"""admin.edge: the admin listener's errors become JSON replies in one place."""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web

from authproxy.admin.edge import admin_edge_middleware
from authproxy.errors import Denied
from tests.support.admin import Stack
from tests.support.auth import bearer_auth


async def test_unexpected_error_is_a_logged_json_500(
    aiohttp_client, log_capture
) -> None:
    """A bug in a handler becomes {"error": "internal error"} and a logged event."""

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    app = web.Application(middlewares=[admin_edge_middleware])
    app.router.add_get("/", broken)
    client = await aiohttp_client(app)
    resp = await client.get("/", headers={"X-Request-ID": "rid-1"})
    assert resp.status == HTTPStatus.INTERNAL_SERVER_ERROR
    assert await resp.read() == b'{"error":"internal error"}'
    assert resp.headers["X-Request-ID"] == "rid-1"
    event = log_capture.events("request_failed")[0]
    assert event["request_id"] == "rid-1"
    assert "RuntimeError: boom" in event["exception"]


async def test_denied_is_answered_at_the_edge(aiohttp_client) -> None:
    """A Denied raised anywhere below becomes its status, message and headers."""

    async def refuse(request: web.Request) -> web.Response:
        raise Denied(429, "rate_limit", "slow down", (("Retry-After", "3"),))

    app = web.Application(middlewares=[admin_edge_middleware])
    app.router.add_get("/", refuse)
    client = await aiohttp_client(app)
    resp = await client.get("/")
    assert resp.status == HTTPStatus.TOO_MANY_REQUESTS
    assert await resp.read() == b'{"error":"slow down"}'
    assert resp.headers["Retry-After"] == "3"
    assert len(resp.headers["X-Request-ID"]) == 32


async def test_unknown_paths_and_methods_are_answered_in_json(stack: Stack) -> None:
    """The router's 404 and 405 (with Allow) are JSON; with no credential, the 401."""
    status, data = await stack.api("GET", "/admin/nothing")
    assert (status, data) == (HTTPStatus.NOT_FOUND, {"error": "not found"})
    headers = {**bearer_auth(stack.admin_token), "Content-Type": "application/json"}
    resp = await stack.admin.delete("/admin/keys/alice", headers=headers)
    assert resp.status == HTTPStatus.METHOD_NOT_ALLOWED
    assert resp.content_type == "application/json"
    assert await resp.json() == {"error": "method not allowed"}
    assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD", "PATCH"}
    assert len(resp.headers["X-Request-ID"]) == 32
    anonymous = await stack.admin.get("/admin/nothing")
    assert (anonymous.status, await anonymous.json()) == (
        401,
        {"error": "unauthorized"},
    )
