"""server.leanfront: plainly shaped requests served lean, answered as aiohttp would.

Two proxies on the same config and the same fake Ollama, one starting each
connection on the lean front and one on aiohttp's handler, are sent the same
raw requests on kept-alive connections; every answer, and what reached
Ollama, must be the same. The parser is checked on its own: every shape it
does not accept goes to aiohttp, so only its acceptances need to be right.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from authproxy.admin.app import create_admin_app
from authproxy.config.model import Config
from authproxy.server.httpserver import (
    GuardedAppRunner,
    GuardedRequestHandler,
)
from authproxy.server.leanfront import LeanFront
from authproxy.server.plainhttp import MAX_BODY
from authproxy.web.app import create_app
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import ProxyTestServer
from tests.support.rawhttp import (
    PER_REQUEST,
    build_request,
    comparable,
    connect,
    parse,
    read_reply,
)


@pytest.fixture
async def pair(config: Config, key: Any) -> Any:
    """(lean server, aiohttp server), both started."""
    servers = [
        ProxyTestServer(create_app(config), config, lean_front=True),
        ProxyTestServer(create_app(config), config, lean_front=False),
    ]
    for server in servers:
        await server.start_server()
    yield servers
    for server in servers:
        await server.close()


def _chat(auth: str, *extra: str, stream: bool = False, pad: int = 0) -> bytes:
    body = json.dumps(
        {"model": "llama3.2", "messages": [], "stream": stream, "x": "y" * pad}
    ).encode()
    return build_request(
        auth,
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *extra,
        method="POST",
        target="/api/chat",
        body=body,
        close=False,
    )


def _requests(token: str) -> list[bytes]:
    auth = f"Authorization: Bearer {token}"
    return [
        build_request(auth, close=False),
        build_request(auth, target="/api/tags?x=1&y=a+b", close=False),
        _chat(auth),
        _chat(auth, stream=True),
        _chat(auth, pad=MAX_BODY),  # too big to serve lean: aiohttp reads it
        build_request(target="/healthz", close=False),  # the app's own route
        build_request(auth, method="POST", target="/healthz/", close=False),
        build_request(auth, target="/api/tags%0A", close=False),
        build_request(auth, target="/./api/tags", close=False),
        build_request(auth, target="//api/tags", close=False),
        build_request(auth, target="/api/show", method="HEAD"),  # read to the end
        build_request(target="/api/tags", close=False),  # no credential
        build_request("Authorization: Bearer nope", close=False),
        build_request(auth, "X-Dup: 1", "X-Dup: 2", close=False),
        build_request(f"authorization:   Bearer {token}  ", close=False),
        build_request(auth, "X-Tab:\tx", close=False),
        build_request(auth, "Connection: close", close=False),
        build_request(auth, "Connection: keep-alive", close=False),
        build_request(auth, "X-Forwarded-For: 10.0.0.1", close=False),
        build_request(auth, "Origin: http://evil.example", close=False),
        build_request(auth, target="/api/tags", host="other", close=False),
        build_request(auth, method="DELETE", target="/api/delete", close=False),
    ]


async def _exchange(port: int | None, request: bytes) -> bytes:
    async with connect(port) as (reader, writer):
        writer.write(request)
        await writer.drain()
        if b"\r\nConnection: close\r\n" in request:
            return await asyncio.wait_for(reader.read(), 5)
        return await _read_whole(reader)


async def _read_whole(reader: asyncio.StreamReader) -> bytes:
    reply = await read_reply(reader)
    if b"transfer-encoding: chunked" in reply.lower():
        # A streamed reply: read its chunks up to the last one.
        rest = b""
        while not rest.endswith(b"0\r\n\r\n"):
            rest += await asyncio.wait_for(reader.read(65536), 5)
        reply += rest
    return reply


def _reached(fake: FakeOllama, since: int) -> list[Any]:
    """What Ollama received since ``since``: all of it but the request ids."""
    return [
        (
            r.method,
            r.path_qs,
            r.body,
            sorted((k, v) for k, v in r.headers.items() if k not in PER_REQUEST),
        )
        for r in fake.received[since:]
    ]


async def test_answers_and_upstream_requests_match_aiohttps(
    pair: list[TestServer], token: str, fake: FakeOllama
) -> None:
    """Every request gets the same answer, and Ollama the same request, both ways."""
    lean, plain = pair
    for request in _requests(token):
        before = len(fake.received)
        head = request.startswith(b"HEAD ")
        by_lean = comparable(await _exchange(lean.port, request), head=head)
        reached = _reached(fake, before)
        del fake.received[before:]
        by_aiohttp = comparable(await _exchange(plain.port, request), head=head)
        reached_plain = _reached(fake, before)
        assert by_lean == by_aiohttp, request
        assert reached == reached_plain, request


def _protocols(server: TestServer) -> set[str]:
    assert server.runner is not None
    assert server.runner.server is not None
    return {type(c).__name__ for c in server.runner.server.connections}


async def _replies(port: int | None, data: bytes, count: int) -> list[Any]:
    """Send ``data`` on one connection; read ``count`` replies from it."""
    async with connect(port) as (reader, writer):
        writer.write(data)
        await writer.drain()
        return [comparable(await _read_whole(reader)) for _ in range(count)]


async def test_a_kept_alive_connection_is_served_lean(
    pair: list[TestServer], token: str
) -> None:
    """Plain requests on one connection stay on the lean front, each answered."""
    lean, plain = pair
    request = build_request(f"Authorization: Bearer {token}", close=False)
    async with connect(lean.port) as (reader, writer):
        for _ in range(3):
            writer.write(request)
            await writer.drain()
            assert parse(await read_reply(reader)).status == 200
        assert _protocols(lean) == {"LeanFront"}
    async with connect(plain.port) as (reader, writer):
        writer.write(request)
        await writer.drain()
        assert parse(await read_reply(reader)).status == 200
        assert _protocols(plain) == {"GuardedRequestHandler"}


async def test_pipelined_requests_are_answered_in_order(
    pair: list[TestServer], token: str
) -> None:
    """Requests sent together get their answers in order, as from aiohttp."""
    auth = f"Authorization: Bearer {token}"
    data = b"".join(
        build_request(auth, target=target, close=False)
        for target in ("/api/tags", "/api/ps", "/api/version", "/api/tags?x")
    )
    lean, plain = pair
    by_lean = await _replies(lean.port, data, 4)
    assert [status for status, _, _ in by_lean] == [200, 200, 200, 200]
    assert by_lean == await _replies(plain.port, data, 4)


async def test_an_unusual_request_hands_the_connection_to_aiohttp(
    pair: list[TestServer], token: str, fake: FakeOllama
) -> None:
    """After a plain request, a chunked upload on the same connection goes to
    aiohttp with the bytes already read, and the connection stays there."""
    auth = f"Authorization: Bearer {token}"
    chat = json.dumps({"model": "llama3.2", "messages": [], "stream": False})
    chunked = build_request(
        auth,
        "Content-Type: application/json",
        "Transfer-Encoding: chunked",
        method="POST",
        target="/api/chat",
        body=f"{len(chat):x}\r\n{chat}\r\n0\r\n\r\n".encode(),
        close=False,
    )
    plain_get = build_request(auth, close=False)
    lean, plain = pair
    data = plain_get + chunked + plain_get
    by_lean = await _replies(lean.port, data, 3)
    assert [status for status, _, _ in by_lean] == [200, 200, 200]
    assert fake.received[-2].body == chat.encode()
    assert by_lean == await _replies(plain.port, data, 3)
    async with connect(lean.port) as (reader, writer):
        writer.write(plain_get + chunked)
        await writer.drain()
        await _read_whole(reader)
        await _read_whole(reader)
        assert _protocols(lean) == {"GuardedRequestHandler"}


async def test_a_head_in_two_parts_goes_to_aiohttp(
    pair: list[TestServer], token: str
) -> None:
    """A request that is not whole in its first read is aiohttp's to finish."""
    lean, _ = pair
    request = build_request(f"Authorization: Bearer {token}", close=False)
    async with connect(lean.port) as (reader, writer):
        writer.write(request[:20])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(request[20:])
        await writer.drain()
        assert parse(await read_reply(reader)).status == 200
        assert _protocols(lean) == {"GuardedRequestHandler"}


async def test_only_the_proxy_app_gets_the_front(config: Config, key: Any) -> None:
    """An app of another shape (the admin API) keeps aiohttp's handler."""
    for app, front in (
        (create_app(config), LeanFront),
        (create_admin_app(create_app(config)), GuardedRequestHandler),
    ):
        runner = GuardedAppRunner(app, header_timeout=1.0, lean_front=True)
        await runner.setup()
        try:
            assert runner.server is not None
            assert type(runner.server()) is front
        finally:
            await runner.cleanup()


async def test_a_graceful_stop_lets_the_request_in_flight_finish(
    pair: list[TestServer], token: str, fake: FakeOllama
) -> None:
    """Stopping closes idle lean connections and answers the busy one first."""
    lean, _ = pair
    auth = f"Authorization: Bearer {token}"
    async with (
        connect(lean.port) as (idle_reader, idle_writer),
        connect(lean.port) as (reader, writer),
    ):
        idle_writer.write(build_request(auth, close=False))
        await idle_writer.drain()
        assert parse(await read_reply(idle_reader)).status == 200
        fake.behaviour.header_delay = 0.5
        writer.write(_chat(auth))
        await writer.drain()
        async with asyncio.timeout(5):  # until Ollama holds the request
            # The fake has no event to wait on.
            while not fake.received or fake.received[-1].path_qs != "/api/chat":  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        stopping = asyncio.ensure_future(lean.close())
        assert await asyncio.wait_for(idle_reader.read(), 5) == b""
        assert parse(await _read_whole(reader)).status == 200
        await stopping
