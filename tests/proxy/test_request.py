"""proxy.request: the pipeline's request type, as aiohttp's request fills it."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pytest_aiohttp import AiohttpClient

from authproxy.proxy.request import (
    ProxyHandler,
    ProxyRequest,
    as_middleware,
    start_response,
)

# Every member the pipeline may read (ProxyRequest's properties and methods).
_MEMBERS = sorted(name for name in vars(ProxyRequest) if not name.startswith("_"))


def test_the_type_names_what_the_pipeline_reads() -> None:
    """The protocol lists the request's parts the edge, handler and relay use."""
    assert _MEMBERS == [
        "app",
        "body_exists",
        "clone",
        "content",
        "content_length",
        "headers",
        "keep_alive",
        "match_info",
        "method",
        "path",
        "query_string",
        "raw_path",
        "rel_url",
        "remote",
        "scheme",
        "transport",
        "version",
        "writer",
    ]


async def test_aiohttp_request_has_every_member(aiohttp_client: AiohttpClient) -> None:
    """A real request served by aiohttp answers each member (no AttributeError)."""
    seen: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.Response:
        for name in _MEMBERS:
            seen[name] = getattr(request, name)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/api/chat", handler)
    client = await aiohttp_client(app)
    resp = await client.post("/api/chat?x=1", data=b'{"model":"m"}')
    assert resp.status == 200
    assert seen["method"] == "POST"
    assert seen["path"] == "/api/chat"
    assert seen["raw_path"] == "/api/chat?x=1"
    assert seen["query_string"] == "x=1"
    assert seen["scheme"] == "http"
    assert seen["body_exists"] is True
    assert seen["content_length"] == len(b'{"model":"m"}')
    assert seen["remote"] == "127.0.0.1"
    assert seen["keep_alive"] is True
    assert seen["clone"](rel_url=seen["rel_url"].with_path("/x")).path == "/x"


async def test_start_response_and_as_middleware(aiohttp_client: AiohttpClient) -> None:
    """A pipeline middleware registered with aiohttp runs; a streamed head is sent."""

    @web.middleware
    async def tag(request: ProxyRequest, handler: ProxyHandler) -> web.StreamResponse:
        response = await handler(request)
        response.headers["X-Tagged"] = request.method
        return response

    async def streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=201)
        response.headers["X-Seen"] = "before-prepare"
        writer = await start_response(response, request)
        assert writer is not None
        await response.write(b"chunk-1")
        await response.write(b"chunk-2")
        await response.write_eof()
        return response

    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="plain")

    app = web.Application(middlewares=[as_middleware(tag)])
    app.router.add_get("/stream", streamed)
    app.router.add_get("/plain", plain)
    client = await aiohttp_client(app)
    resp = await client.get("/plain")
    assert resp.headers["X-Tagged"] == "GET"
    assert await resp.read() == b"plain"
    resp = await client.get("/stream")
    assert resp.status == 201
    assert resp.headers["X-Seen"] == "before-prepare"
    assert await resp.read() == b"chunk-1chunk-2"
