"""server.leanrequest: a LeanRequest reads as aiohttp's request of the same bytes.

A real aiohttp server records what its ``web.Request`` says for a request; a
``LeanRequest`` is built from the same bytes; every member the pipeline
reads must agree.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from aiohttp import StreamReader, web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_writer import StreamWriter
from aiohttp.streams import EMPTY_PAYLOAD
from pytest_aiohttp import AiohttpClient
from yarl import URL

from authproxy.memo import MEMO_KEY_LENGTH
from authproxy.server.fastroute import MATCH_MEMO_SIZE, find_catch_all
from authproxy.server.leanrequest import Connection, LeanRequest, WholeBody
from authproxy.server.plainhttp import Limits, plain_request

_FIELDS = (
    "method",
    "path",
    "raw_path",
    "query_string",
    "body_exists",
    "content_length",
    "scheme",
    "remote",
    "keep_alive",
)


def _view(request: Any) -> dict[str, Any]:
    seen = {name: getattr(request, name) for name in _FIELDS}
    seen["rel_url"] = (request.rel_url.raw_path, request.rel_url.raw_query_string)
    seen["headers"] = list(request.headers.items())
    seen["tail"] = request.match_info["tail"]
    seen["route"] = request.match_info.route.name
    clone = request.clone(
        rel_url=URL.build(path="/x", query_string="a=1", encoded=True)
    )
    seen["clone"] = (clone.path, clone.raw_path, clone.query_string)
    return seen


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("GET", "/api/tags", b""),
        ("GET", "/api/tags?x=1&y=a+b", b""),
        ("POST", "/api/chat", b'{"model":"m"}'),
        ("POST", "/v1/chat/completions?stream", b""),
        ("GET", "/", b""),
    ],
)
async def test_members_match_aiohttps_request(
    aiohttp_client: AiohttpClient, method: str, target: str, body: bytes
) -> None:
    """Each member the pipeline reads says what web.Request says."""
    seen: dict[str, Any] = {}

    async def catch_all(request: web.Request) -> web.Response:
        seen.update(_view(request))
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", catch_all, name="proxy")
    client = await aiohttp_client(app)
    head = f"{method} {target} HTTP/1.1\r\nHost: h\r\nX-A:  v \r\n"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    data = head.encode() + b"\r\n" + body
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(data)
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    writer.close()

    found = find_catch_all(app)
    assert found is not None
    plain = plain_request(data, Limits(8190, 8190, 100), found.plain_paths)
    assert plain is not None
    transport = cast(asyncio.Transport, writer.transport)  # handed on, not used
    conn = Connection(found, transport, "127.0.0.1", "http")
    loop = asyncio.get_running_loop()
    response_writer = StreamWriter(BaseProtocol(loop), loop)  # never written to
    lean = LeanRequest(conn, plain, plain.target, EMPTY_PAYLOAD, response_writer)
    assert _view(lean) == seen


async def test_a_whole_body_reads_once_like_a_fed_stream_reader() -> None:
    """``WholeBody`` answers the body readers as a ``StreamReader`` fed to its end."""
    loop = asyncio.get_running_loop()
    fed = StreamReader(BaseProtocol(loop), 2**16, loop=loop)
    fed.feed_data(b'{"model":"m"}')
    fed.feed_eof()
    for reader in (WholeBody(b'{"model":"m"}'), fed):
        assert reader.is_eof()
        assert reader.read_nowait() == b'{"model":"m"}'
        assert reader.read_nowait() == b""
        assert await reader.readany() == b""
        assert reader.is_eof()
    streamed = WholeBody(b"abc")
    assert [await streamed.readany(), await streamed.readany()] == [b"abc", b""]


def test_match_infos_are_shared_per_path_and_bounded() -> None:
    """One frozen match info per tail, as aiohttp builds it; the memo stays bounded."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _never_called, name="proxy")
    app.freeze()
    found = find_catch_all(app)
    assert found is not None
    chat = found.match_info("api/chat")
    assert found.match_info("api/chat") is chat
    assert (chat["tail"], chat.route.name, chat.apps, chat.current_app) == (
        "api/chat",
        "proxy",
        (app,),
        app,
    )
    with pytest.raises(RuntimeError):
        chat.add_app(app)  # frozen: no request can change what others share
    for i in range(MATCH_MEMO_SIZE + 3):
        assert found.match_info(f"p{i}")["tail"] == f"p{i}"
    assert len(found.matches) <= MATCH_MEMO_SIZE
    long = "a/" * MEMO_KEY_LENGTH
    assert found.match_info(long)["tail"] == long
    assert long not in found.matches  # built each time, not kept


async def _never_called(request: web.Request) -> web.Response:
    raise AssertionError("not served")
