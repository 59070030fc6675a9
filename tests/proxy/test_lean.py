"""proxy.lean: the pooled upstream client on real sockets, and the one retry."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from http import HTTPStatus
from typing import Any

import pytest
import trustme
from multidict import CIMultiDict
from yarl import URL

from authproxy.config.load import load_config
from authproxy.errors import ConfigError
from authproxy.proxy.h1 import LeanFailure, LeanTimeout
from authproxy.proxy.lean import LeanClient
from tests.support.payloads import SAY_HI
from tests.support.polling import poll_until
from tests.support.rawhttp import closed_port
from tests.support.scripted import Scripted, scripted, wait_for_end
from tests.support.tls import client_context

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def _client(port: int, **kwargs: Any) -> LeanClient:
    settings = {"connect_timeout": 2.0, "response_timeout": 2.0, "max_connections": 4}
    return LeanClient(URL(f"http://127.0.0.1:{port}"), **{**settings, **kwargs})


def _headers() -> CIMultiDict[str]:
    return CIMultiDict({"Host": "ollama"})


async def _get(
    client: LeanClient, method: str = "GET", body: Any = None, **headers: str
) -> tuple[int, bytes]:
    url = URL("http://127.0.0.1/api/tags")
    all_headers = _headers()
    all_headers.update(headers)
    async with client.request(method, url, all_headers, body) as reply:
        return reply.status, await reply.read()


async def _answer_each(up: Scripted, reader: Any, writer: Any) -> None:
    """Answer every request on the connection with ``OK``."""
    while True:
        await up.read_request(reader)
        writer.write(OK)


async def test_sized_replies_reuse_one_connection() -> None:
    """Content-Length replies are read whole and the connection is kept for more."""
    async with scripted(_answer_each) as up:
        client = _client(up.port)
        assert await _get(client) == (200, b"hello")
        assert await _get(client) == (200, b"hello")
        assert (up.connections, client.idle, client.in_use) == (1, 1, 0)
        await client.close()
    assert up.requests[0].startswith(b"GET /api/tags HTTP/1.1\r\nHost: ollama\r\n")


async def test_chunked_reply_streams_chunk_by_chunk() -> None:
    """Each chunk is readable as soon as it is sent, its bytes unchanged."""
    more = asyncio.Event()

    async def chunks(up: Scripted, reader: Any, writer: Any) -> None:
        await up.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b'6\r\n{"a":1\r\n')
        await more.wait()
        writer.write(b"3\r\n}\r\n\r\n0\r\n\r\n")
        await wait_for_end(reader, up)

    async with scripted(chunks) as up:
        client = _client(up.port)
        url = URL("http://127.0.0.1/api/chat")
        async with client.request("POST", url, _headers(), b"{}") as reply:
            assert await reply.content.readany() == b'{"a":1'  # before the rest
            more.set()
            assert await reply.read() == b"}\r\n"
            assert await reply.readany() == b""
        assert client.idle == 1
        await client.close()


async def test_body_to_eof_without_length() -> None:
    """No length and Connection: close: the body ends with the connection."""

    async def to_eof(up: Scripted, reader: Any, writer: Any) -> None:
        await up.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nab")
        await writer.drain()
        writer.write(b"cd")

    async with scripted(to_eof) as up:
        client = _client(up.port)
        assert await _get(client) == (200, b"abcd")
        assert client.idle == 0  # never pooled


async def test_cut_sized_body_is_upstream_closed() -> None:
    """A connection closed before Content-Length bytes came fails the read."""

    async def cut(up: Scripted, reader: Any, writer: Any) -> None:
        await up.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")

    async with scripted(cut) as up:
        client = _client(up.port)
        with pytest.raises(LeanFailure) as caught:
            await _get(client)
        assert caught.value.reason == "upstream closed connection"
        assert (client.idle, client.in_use) == (0, 0)


async def test_head_has_no_body() -> None:
    """A HEAD reply's Content-Length describes a body that never comes."""

    async def head(up: Scripted, reader: Any, writer: Any) -> None:
        await up.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        await wait_for_end(reader, up)

    async with scripted(head) as up:
        client = _client(up.port)
        assert await _get(client, "HEAD") == (200, b"")
        assert await poll_until(lambda: up.ended == 1, within=5)
        assert b"Content-Length" not in up.requests[0]


async def test_interim_replies_are_skipped() -> None:
    """100 Continue and 103 Early Hints come before the reply; only it is seen."""

    async def interim(up: Scripted, reader: Any, writer: Any) -> None:
        await up.read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
        writer.write(b"HTTP/1.1 201 Created\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok")
        await wait_for_end(reader, up)

    async with scripted(interim) as up:
        client = _client(up.port)
        url = URL("http://127.0.0.1/api/create")
        async with client.request("POST", url, _headers(), b"{}") as reply:
            assert (reply.status, reply.reason) == (201, "Created")
            assert "Link" not in reply.headers
            assert reply.headers["X-A"] == "1"
            assert await reply.read() == b"ok"
        await client.close()


async def test_connection_close_from_upstream_is_not_pooled() -> None:
    """A reply with Connection: close is read whole; the next request connects anew."""

    async def close(up: Scripted, reader: Any, writer: Any) -> None:
        await up.read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
        )

    async with scripted(close) as up:
        client = _client(up.port)
        assert await _get(client) == (200, b"ok")
        assert client.idle == 0
        assert await _get(client) == (200, b"ok")
        assert up.connections == 2


async def test_idle_connection_closed_by_upstream_is_not_used() -> None:
    """An upstream that hangs up an idle pooled connection costs no failure."""

    async def once(up: Scripted, reader: Any, writer: Any) -> None:
        await up.read_request(reader)
        writer.write(OK)

    async with scripted(once) as up:
        client = _client(up.port)
        assert await _get(client) == (200, b"hello")
        assert await poll_until(lambda: client.idle == 0, within=5)
        assert await _get(client, "POST", b"{}") == (200, b"hello")
        assert up.connections == 2


def _close_second() -> Any:
    """A script: answer the first request, then read the second and hang up."""

    async def script(up: Scripted, reader: Any, writer: Any) -> None:
        await up.read_request(reader)
        if up.connections > 1:
            writer.write(OK)
            return
        writer.write(OK)
        await up.read_request(reader)
        writer.transport.abort()

    return script


async def test_safe_request_on_a_dead_reused_connection_is_sent_again() -> None:
    """A GET whose reused connection closed before any reply byte is retried once."""
    async with scripted(_close_second()) as up:
        client = _client(up.port)
        assert await _get(client) == (200, b"hello")
        assert await _get(client) == (200, b"hello")
        assert (up.connections, len(up.requests)) == (2, 3)
        await client.close()


@pytest.mark.parametrize(
    ("method", "body"),
    [("POST", b"{}"), ("DELETE", None), ("GET", "stream")],
    ids=["post", "delete", "get-streamed-body"],
)
async def test_unsafe_request_is_never_sent_twice(method: str, body: Any) -> None:
    """POST, DELETE, or a body that cannot be replayed: the failure stands."""

    async def stream() -> AsyncIterator[bytes]:
        yield b"x"

    async with scripted(_close_second()) as up:
        client = _client(up.port)
        assert await _get(client) == (200, b"hello")
        with pytest.raises(LeanFailure) as caught:
            await _get(client, method, stream() if body == "stream" else body)
        assert caught.value.reason in {
            "upstream closed connection",
            "connection reset by upstream",
        }
        assert (up.connections, len(up.requests)) == (1, 2)


async def test_new_connection_that_fails_is_not_retried() -> None:
    """Only a reused connection may have gone stale: a new one's failure is real."""

    async def hang_up(up: Scripted, reader: Any, writer: Any) -> None:
        await up.read_request(reader)
        writer.transport.abort()

    async with scripted(hang_up) as up:
        client = _client(up.port)
        with pytest.raises(LeanFailure):
            await _get(client)
        assert up.connections == 1


async def test_reply_begun_then_cut_is_not_retried() -> None:
    """A reused connection that sent a reply byte has reached the upstream."""

    async def partial(up: Scripted, reader: Any, writer: Any) -> None:
        await up.read_request(reader)
        writer.write(OK)
        await up.read_request(reader)
        writer.write(b"HTTP/1.1 2")

    async with scripted(partial) as up:
        client = _client(up.port)
        await _get(client)
        with pytest.raises(LeanFailure):
            await _get(client)
        assert up.connections == 1


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: a new connection hangs in SYN-SENT."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        filler.connect(("127.0.0.1", port))
        yield port


async def test_connect_timeout(full_backlog: int) -> None:
    """No connection within connect_timeout: ``connect timeout``."""
    client = _client(full_backlog, connect_timeout=0.2)
    with pytest.raises(LeanTimeout) as caught:
        await _get(client)
    assert caught.value.reason == "connect timeout"
    assert client.in_use == 0


async def test_tls_upstream_verifies_its_name() -> None:
    """https:// upstreams: the certificate and host name are checked, then reused."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    upstream = await asyncio.start_server(_tls_answer, "127.0.0.1", 0, ssl=server_ctx)
    port = int(upstream.sockets[0].getsockname()[1])
    async with upstream:
        client = LeanClient(
            URL(f"https://127.0.0.1:{port}"),
            connect_timeout=5,
            response_timeout=5,
            max_connections=1,
            ssl_context=client_context(ca),
        )
        assert await _get(client) == (200, b"hello")
        assert await _get(client) == (200, b"hello")
        assert client.idle == 1
        await client.close()
        untrusting = LeanClient(
            URL(f"https://127.0.0.1:{port}"),
            connect_timeout=5,
            response_timeout=5,
            max_connections=1,
        )
        with pytest.raises(LeanFailure) as caught:
            await _get(untrusting)
        assert caught.value.reason.startswith("TLS certificate verify failed (")


async def _tls_answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    with contextlib.suppress(
        ConnectionError, asyncio.IncompleteReadError, ssl.SSLError
    ):
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(OK)
    writer.close()


async def test_connect_failures_are_named() -> None:
    """A closed port and a name that does not resolve, in nginx's words."""
    with pytest.raises(LeanFailure) as refused:
        await _get(_client(closed_port()))
    assert refused.value.reason == "connect refused"
    nowhere = LeanClient(
        URL("http://nowhere.invalid:11434"),
        connect_timeout=5,
        response_timeout=5,
        max_connections=1,
    )
    with pytest.raises(LeanFailure) as dns:
        await _get(nowhere)
    assert dns.value.reason == "DNS lookup failed (nowhere.invalid)"


async def test_response_timeout_and_idle_timeout() -> None:
    """No headers within response_timeout, then a body quiet past idle: read timeout."""

    async def slow(up: Scripted, reader: Any, writer: Any) -> None:
        await up.read_request(reader)
        if up.connections == 1:
            await wait_for_end(reader, up)  # never answers
            return
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
        await wait_for_end(reader, up)

    async with scripted(slow) as up:
        client = _client(up.port, response_timeout=0.2)
        with pytest.raises(LeanTimeout) as headers:
            await _get(client)
        assert headers.value.reason == "read timeout"
        url = URL("http://127.0.0.1/api/chat")
        async with client.request("POST", url, _headers(), b"{}") as reply:
            reply.set_read_timeout(0.2)
            assert await reply.readany() == b"a"
            with pytest.raises(LeanTimeout) as body:
                await reply.readany()
        assert body.value.reason == "read timeout"
        assert await poll_until(lambda: up.ended == 2, within=5)
        assert (client.idle, client.in_use) == (0, 0)
    assert client.reply_poll.waiting == 0  # the timed-out wait ended too


POLL = 0.05


async def test_reply_head_is_polled_for_unless_replies_come_late() -> None:
    """A quick reply is awaited polling; after a late one, until a quick one, asleep."""

    async def late_second(up: Scripted, reader: Any, writer: Any) -> None:
        for number in range(1, 5):
            await up.read_request(reader)
            if number == 2:
                await asyncio.sleep(POLL * 3)
            writer.write(OK)

    async with scripted(late_second) as up:
        client = _client(up.port, reply_poll=POLL)
        poll = client.reply_poll
        assert await _get(client) == (200, b"hello")
        assert poll.passes > 0
        assert await _get(client) == (200, b"hello")  # late: polled, then asleep
        assert await poll_until(lambda: not poll.polling, within=5)
        passes = poll.passes
        assert await _get(client) == (200, b"hello")  # quick, but not polled
        assert poll.passes == passes
        assert await _get(client) == (200, b"hello")  # polled again
        assert poll.passes > passes
        assert (poll.waiting, up.connections) == (0, 1)
        await client.close()


async def test_cancelled_request_closes_its_connection() -> None:
    """A client gone mid-stream closes the upstream connection; it is not pooled."""
    sent = asyncio.Event()

    async def endless(up: Scripted, reader: Any, writer: Any) -> None:
        await up.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
        sent.set()
        await wait_for_end(reader, up)

    async with scripted(endless) as up:
        client = _client(up.port)

        async def read_all() -> None:
            await _get(client, "POST", b"{}")

        task = asyncio.create_task(read_all())
        await sent.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await poll_until(lambda: up.ended == 1, within=5)
        assert (client.idle, client.in_use) == (0, 0)


async def test_pool_limit_queues_then_times_out() -> None:
    """Past max_connections a request waits for a free one, within connect_timeout."""
    go = asyncio.Event()

    async def gated(up: Scripted, reader: Any, writer: Any) -> None:
        while True:
            await up.read_request(reader)
            await go.wait()
            writer.write(OK)

    async with scripted(gated) as up:
        client = _client(up.port, max_connections=1, connect_timeout=0.3)
        first = asyncio.create_task(_get(client))
        assert await poll_until(lambda: len(up.requests) == 1, within=5)
        with pytest.raises(LeanTimeout) as caught:
            await _get(client)
        assert caught.value.reason == "connect timeout"
        second = asyncio.create_task(_get(client))
        go.set()
        assert await first == (200, b"hello")
        assert await second == (200, b"hello")
        assert (up.connections, up.most_open) == (1, 1)
        await client.close()


async def _stream(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.parametrize(
    ("body", "headers", "wire"),
    [
        (b"abc", {}, b"Content-Length: 3\r\n\r\nabc"),
        (
            io.BytesIO(b"x" * 70000),
            {"Content-Length": "70000"},
            b"\r\n\r\n" + b"x" * 70000,
        ),
        (
            _stream(b"ab", b"", b"cde"),
            {},
            b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n",
        ),
        (_stream(b"ab", b"cd"), {"Content-Length": "4"}, b"\r\n\r\nabcd"),
        (None, {}, b"Content-Length: 0\r\n\r\n"),
    ],
    ids=["bytes", "file-sized", "stream-chunked", "stream-sized", "none"],
)
async def test_request_bodies_on_the_wire(
    body: Any, headers: dict[str, str], wire: bytes
) -> None:
    """Bodies go sized when their size is known, chunked when it is not."""
    async with scripted(_answer_each) as up:
        client = _client(up.port)
        assert await _get(client, "POST", body, **headers) == (200, b"hello")
        assert up.requests[0].endswith(wire)
        await client.close()


async def test_big_body_waits_for_a_slow_upstream() -> None:
    """A body bigger than the socket buffers is written as the upstream reads it."""
    body = bytes(range(256)) * 65536  # 16 MiB
    reading = asyncio.Event()

    async def slow(up: Scripted, reader: Any, writer: Any) -> None:
        await reading.wait()
        await up.read_request(reader)
        writer.write(OK)

    async with scripted(slow) as up:
        client = _client(up.port)
        sending = asyncio.create_task(_get(client, "POST", io.BytesIO(body)))
        assert await poll_until(lambda: up.connections == 1)
        reading.set()
        assert await sending == (200, b"hello")
        assert up.requests[0].endswith(b"\r\n\r\n" + body)
        await client.close()


async def test_early_answer_to_a_streamed_body_is_read() -> None:
    """An upstream that answers and hangs up before the body's end: its reply counts."""

    async def refuse(up: Scripted, reader: Any, writer: Any) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 2\r\n\r\nno")
        await writer.drain()
        writer.transport.abort()

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(1000):
            yield b"x" * 1024
            await asyncio.sleep(0.01)

    async with scripted(refuse) as up:
        client = _client(up.port)
        assert await _get(client, "POST", endless()) == (413, b"no")
        assert (client.idle, client.in_use) == (0, 0)


async def test_header_with_a_newline_is_refused() -> None:
    """A value that would split into two header lines is never sent."""
    async with scripted(_answer_each) as up:
        with pytest.raises(LeanFailure):
            await _get(_client(up.port), **{"X-A": "1\r\nX-B: 2"})
        assert up.requests == []


@pytest.mark.parametrize("client", ["lean", "aiohttp"])
async def test_both_clients_relay_the_same_bytes(start_proxy, bearer, client) -> None:
    """upstream.client picks the client; the reply's bytes are the same with each."""
    proxy = await start_proxy({"upstream.client": client})
    resp = await proxy.post("/api/chat", json=SAY_HI, headers=bearer)
    assert resp.status == HTTPStatus.OK
    lines = (await resp.read()).splitlines()
    assert lines[-1].startswith(b'{"model":"llama3.2"')
    assert len(lines) > 2


def test_unknown_client_is_a_config_error() -> None:
    """upstream.client is lean or aiohttp, and the error names the key."""
    with pytest.raises(ConfigError, match=r"upstream\.client"):
        load_config(None, {"upstream.client": "fast"})
