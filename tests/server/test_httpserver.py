"""server.httpserver: the header deadline and keep-alive limits, on raw sockets."""

from __future__ import annotations

import asyncio

from tests.support.fake_ollama.server import FakeOllama


async def test_slow_headers_are_cut(start_proxy, fake: FakeOllama, log_capture) -> None:
    """A client trickling its headers (slowloris) is cut after header_timeout."""
    client = await start_proxy({"limits.header_timeout": 0.5})
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(b"GET /api/tags HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert asyncio.get_running_loop().time() - started < 4
    writer.close()
    assert log_capture.events("request_header_timeout")
    assert fake.received == []


async def test_slow_body_upload_is_not_cut(start_proxy, key, fake: FakeOllama) -> None:
    """The header deadline does not touch a slow but steady request body."""
    client = await start_proxy({"limits.header_timeout": 0.3})
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(
        f"POST /api/blobs/sha256:{'ab' * 32} HTTP/1.1\r\nHost: x\r\n"
        f"Connection: close\r\nAuthorization: Bearer {key.token}\r\n"
        "Content-Length: 10\r\n\r\n".encode()
    )
    for _ in range(5):
        writer.write(b"xx")
        await writer.drain()
        await asyncio.sleep(0.15)
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 201 ")
    assert fake.last.body == b"x" * 10


async def test_idle_keepalive_is_closed(start_proxy, key) -> None:
    """An idle keep-alive connection is closed after server.keepalive_timeout."""
    client = await start_proxy({"server.keepalive_timeout": 0.5})
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await reader.readuntil(b'"ok"}')
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_idle_connection_without_request_is_closed(start_proxy) -> None:
    """A connection that never sends a request is closed after the keep-alive time."""
    client = await start_proxy({"server.keepalive_timeout": 0.5})
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
