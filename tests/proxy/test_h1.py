"""proxy.h1: one upstream connection, its parser, flow control and failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from authproxy.proxy.h1 import HIGH_WATER, H1Connection, LeanFailure
from tests.support.polling import poll_until
from tests.support.scripted import Scripted, scripted, wait_for_end

GET = b"GET / HTTP/1.1\r\nHost: ollama\r\n\r\n"


async def _open(port: int) -> H1Connection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(
        lambda: H1Connection(loop), "127.0.0.1", port
    )
    return conn


async def _exchange(conn: H1Connection) -> None:
    conn.begin(False, 5.0)
    await conn.write(GET)
    await conn.read_head()


def _replying(*parts: bytes) -> Any:
    async def script(up: Scripted, reader: Any, writer: Any) -> None:
        await up.read_request(reader)
        for part in parts:
            writer.write(part)
        await wait_for_end(reader, up)

    return script


@pytest.fixture
async def big() -> AsyncIterator[Scripted]:
    """An upstream that sends a 2 MiB body at once."""
    body = bytes(range(256)) * 8192
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    async with scripted(_replying(head, body)) as up:
        yield up


async def test_reading_pauses_while_the_reader_lags(big: Scripted) -> None:
    """Past the high-water mark the socket is not read; the bytes come out whole."""
    conn = await _open(big.port)
    await _exchange(conn)
    assert conn.transport is not None
    transport = conn.transport
    assert await poll_until(lambda: not transport.is_reading())
    body = b""
    while chunk := await conn.readany():
        body += chunk
    assert body == bytes(range(256)) * 8192
    assert conn.reusable()
    assert len(body) > HIGH_WATER
    conn.abort()


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        b"HTTP/1.1 abc\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ],
    ids=["upgrade", "bad-status", "not-http", "two-lengths"],
)
async def test_invalid_replies_are_named(reply: bytes) -> None:
    """What llhttp refuses, and a 101 nobody asked for: invalid response."""
    async with scripted(_replying(reply)) as up:
        conn = await _open(up.port)
        with pytest.raises(LeanFailure) as caught:
            await _exchange(conn)
        assert caught.value.reason == "invalid response from upstream"
        assert not conn.reusable()


async def test_headers_keep_order_and_undecodable_bytes() -> None:
    """Repeated headers stay in order; bytes that are not UTF-8 survive the trip."""
    reply = (
        b"HTTP/1.1 404 Not Found\r\nSet-A: 1\r\nSet-A: 2\r\nX-Raw: caf\xe9\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    async with scripted(_replying(reply)) as up:
        conn = await _open(up.port)
        await _exchange(conn)
        assert (conn.status, conn.reason) == (404, "Not Found")
        assert conn.headers.getall("Set-A") == ["1", "2"]
        assert conn.headers["X-Raw"].encode("utf-8", "surrogateescape") == b"caf\xe9"
        assert await conn.readany() == b""
        assert conn.reusable()
        conn.abort()


async def test_reason_phrase_is_the_replys_own() -> None:
    """A reply without a reason phrase has none: not the last reply's, nor a 100's."""
    replies = (
        b"HTTP/1.1 200 Fine\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
    )

    async def two(up: Scripted, reader: Any, writer: Any) -> None:
        for reply in replies:
            await up.read_request(reader)
            writer.write(reply)
        await wait_for_end(reader, up)

    async with scripted(two) as up:
        conn = await _open(up.port)
        await _exchange(conn)
        assert (conn.status, conn.reason) == (200, "Fine")
        assert await conn.readany() == b""
        await _exchange(conn)
        assert (conn.status, conn.reason) == (200, "")
        conn.abort()


async def test_bytes_while_idle_close_the_connection() -> None:
    """An upstream that sends past its reply is confused: the connection is dropped."""
    reply = b"HTTP/1.1 204 No Content\r\n\r\n"
    async with scripted(_replying(reply, b"HTTP/1.1 200 OK\r\n")) as up:
        conn = await _open(up.port)
        await _exchange(conn)
        assert await conn.readany() == b""
        assert await poll_until(lambda: conn.closed)
        assert not conn.reusable()


async def test_write_after_close_fails() -> None:
    """Writing on a connection the upstream closed says so, never writes blindly."""

    async def hang_up(up: Scripted, reader: Any, writer: Any) -> None:
        writer.transport.abort()

    async with scripted(hang_up) as up:
        conn = await _open(up.port)
        assert await poll_until(lambda: conn.closed)
        conn.begin(False, 5.0)
        with pytest.raises(LeanFailure):
            await conn.write(GET)
