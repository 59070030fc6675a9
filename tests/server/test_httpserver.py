"""server.httpserver: the header deadline and keep-alive limits, on raw sockets."""

from __future__ import annotations

import asyncio

from tests.support.auth import bearer_auth
from tests.support.fake_ollama.server import FakeOllama
from tests.support.payloads import blob_path
from tests.support.rawhttp import build_request, connect, header_lines


async def test_slow_headers_are_cut(start_proxy, fake: FakeOllama, log_capture) -> None:
    """A client trickling its headers (slowloris) is cut after header_timeout."""
    client = await start_proxy({"limits.header_timeout": 0.5})
    async with connect(client.port) as (reader, writer):
        writer.write(b"GET /api/tags HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert asyncio.get_running_loop().time() - started < 4
    assert log_capture.events("request_header_timeout")
    assert fake.received == []


async def test_slow_body_upload_is_not_cut(start_proxy, key, fake: FakeOllama) -> None:
    """The header deadline does not touch a slow but steady request body."""
    client = await start_proxy({"limits.header_timeout": 0.3})
    head = build_request(
        *header_lines(bearer_auth(key.token)),
        "Content-Length: 10",
        method="POST",
        target=blob_path("ab"),
    )
    async with connect(client.port) as (reader, writer):
        writer.write(head)
        for _ in range(5):  # the behaviour under test: 2 bytes every 150 ms
            writer.write(b"xx")
            await writer.drain()
            await asyncio.sleep(0.15)
        reply = await asyncio.wait_for(reader.read(), 5)
    assert reply.startswith(b"HTTP/1.1 201 ")
    assert fake.last.body == b"x" * 10


async def test_idle_keepalive_is_closed(start_proxy, key) -> None:
    """An idle keep-alive connection is closed after server.keepalive_timeout."""
    client = await start_proxy({"server.keepalive_timeout": 0.5})
    async with connect(client.port) as (reader, writer):
        writer.write(build_request(target="/healthz", close=False))
        await writer.drain()
        await reader.readuntil(b'"ok"}')
        assert await asyncio.wait_for(reader.read(), 5) == b""


async def test_idle_connection_without_request_is_closed(start_proxy) -> None:
    """A connection that never sends a request is closed after the keep-alive time."""
    client = await start_proxy({"server.keepalive_timeout": 0.5})
    async with connect(client.port) as (reader, _):
        assert await asyncio.wait_for(reader.read(), 5) == b""
