"""proxy.upstream: targets joined to the configured origin, never chosen by it."""

from __future__ import annotations

import asyncio

import pytest

from authproxy.web.appkeys import UPSTREAM_KEY
from tests.support.fake_ollama.server import FakeOllama


def fake_port(proxy) -> int:
    port: int | None = proxy.app[UPSTREAM_KEY].origin.port
    assert port is not None
    return port


@pytest.mark.parametrize(
    "raw_path",
    [
        "/api/tags?x=%2F&y=a%20b",
        "/v1/models/a%2Fb",
        "/api/tags?next=/../x",
    ],
    ids=["query", "encoded-slash", "dots-in-query"],
)
async def test_path_forwarded_as_received(
    proxy, bearer, fake: FakeOllama, raw_path
) -> None:
    """The raw path and query reach the configured upstream unchanged."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        f"GET {raw_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Authorization: {bearer['Authorization']}\r\n\r\n".encode()
    )
    await writer.drain()
    reply = await reader.read()
    writer.close()
    assert reply.startswith(b"HTTP/1.1 ")
    assert fake.last.path_qs == raw_path
    assert fake.last.headers["Host"] == f"127.0.0.1:{fake_port(proxy)}"


async def test_absolute_form_target_is_rejected(
    proxy, bearer, fake: FakeOllama
) -> None:
    """An absolute-form request target never chooses the upstream host."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        b"GET http://evil.example/api/tags HTTP/1.1\r\nHost: evil.example\r\n"
        + f"Authorization: {bearer['Authorization']}\r\n".encode()
        + b"Connection: close\r\n\r\n"
    )
    await writer.drain()
    reply = await reader.read()
    writer.close()
    assert reply.startswith(b"HTTP/1.1 400")
    assert b'{"error":"invalid request target"}' in reply
    assert fake.received == []
