"""responses: the compact ``{"error": ...}`` reply."""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web

from authproxy.responses import json_error


async def test_json_error_shape(aiohttp_client) -> None:
    """Errors are compact {"error": ...} with the JSON type and extra headers."""

    async def handler(request: web.Request) -> web.Response:
        return json_error(429, "slow down", {"Retry-After": "3"})

    app = web.Application()
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    resp = await client.get("/")
    assert resp.status == HTTPStatus.TOO_MANY_REQUESTS
    assert await resp.read() == b'{"error":"slow down"}'
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert resp.headers["Retry-After"] == "3"
