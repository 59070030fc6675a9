"""proxy.relayed: a whole reply sent in one write is what ``prepare`` would send."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from multidict import CIMultiDict
from pytest_aiohttp import AiohttpServer

from authproxy.proxy.relayed import Relayed
from authproxy.proxy.request import ProxyRequest, start_response
from tests.support import rawhttp

_JSON = b'{"model":"m","message":{"role":"assistant","content":"hi"},"done":true}'
_UPSTREAM_DATE = "Wed, 02 Dec 2026 00:35:38 GMT"
_DATE_LINE = re.compile(rb"\r\nDate: [^\r]*")
# Header sets a relayed reply may carry (the upstream's, already filtered).
_HEADS: dict[str, list[tuple[str, str]]] = {
    "dated-json": [
        ("Content-Type", "application/json; charset=utf-8"),
        ("Date", _UPSTREAM_DATE),
        ("Content-Length", str(len(_JSON))),
    ],
    "bare": [("Content-Length", str(len(_JSON)))],
    "repeated-names": [
        ("content-type", "application/json"),
        ("Vary", "Accept"),
        ("vary", "Cookie"),
        ("X-Upstream", "1"),
        ("Content-Length", str(len(_JSON))),
    ],
}


def _app(sent: dict[str, Any]) -> web.Application:
    """``/whole`` sends with ``send_whole``, ``/prepared`` the way aiohttp does."""

    def build(request: web.Request) -> tuple[Relayed, bytes]:
        name = request.query["head"]
        body = b"" if request.query.get("empty") else _JSON
        headers = CIMultiDict(_HEADS[name])
        if body == b"":
            headers["Content-Length"] = "0"
        response = Relayed(status=200, reason="OK", headers=headers)
        response.headers["X-Request-ID"] = "fixed"
        return response, body

    async def whole(request: web.Request) -> web.StreamResponse:
        response, body = build(request)
        assert response.sends_whole(request, body)
        await response.send_whole(request, body)
        sent["whole"] = response
        return response

    async def prepared(request: web.Request) -> web.StreamResponse:
        response, body = build(request)
        await start_response(response, request)
        if body:
            await response.write(body)
        await response.write_eof()
        sent["prepared"] = response
        return response

    async def signal(request: web.Request, response: web.StreamResponse) -> None:
        # What the app's signals do: read the prepared head, change it.
        sent.setdefault("seen", []).append(
            (response.headers.get("Server"), "Date" in response.headers)
        )
        response.headers.popall("Server", None)
        response.headers.add("Vary", "Origin")

    app = web.Application()
    app.router.add_get("/whole", whole)
    app.router.add_get("/prepared", prepared)
    app.on_response_prepare.append(signal)
    return app


async def _both(port: int | None, query: str, *extra: str) -> tuple[bytes, bytes]:
    replies = []
    for path in ("/whole", "/prepared"):
        request = rawhttp.build_request(*extra, target=f"{path}?{query}", close=False)
        replies.append(await rawhttp.exchange(port, request))
    return replies[0], replies[1]


@pytest.mark.parametrize("head", sorted(_HEADS))
@pytest.mark.parametrize("empty", [False, True])
async def test_the_bytes_are_prepares(
    aiohttp_server: AiohttpServer, head: str, empty: bool
) -> None:
    """Status line, every header in order, and body: the same bytes either way."""
    sent: dict[str, Any] = {}
    server = await aiohttp_server(_app(sent))
    query = f"head={head}" + ("&empty=1" if empty else "")
    whole, prepared = await _both(server.port, query)
    if "Date" in dict(_HEADS[head]):
        assert whole == prepared  # the upstream's Date: nothing generated
    else:
        assert b"\r\nDate: " in whole
        assert _DATE_LINE.sub(b"", whole) == _DATE_LINE.sub(b"", prepared)
    if empty:
        assert whole.endswith(b"\r\n\r\n")
    else:
        assert whole.endswith(b"\r\n\r\n" + _JSON)
    # The signals ran once each, on the prepared head (Server set, Date there).
    assert sent["seen"] == [(SERVER_SOFTWARE, True)] * 2
    assert b"\r\nServer:" not in whole
    for response in (sent["whole"], sent["prepared"]):
        assert response.prepared
        assert response.keep_alive is True
    assert sent["whole"].body_length == sent["prepared"].body_length == len(whole)


async def test_a_closing_request_is_answered_with_connection_close(
    aiohttp_server: AiohttpServer,
) -> None:
    """A client that asked to close gets ``Connection: close`` and a closed socket."""
    sent: dict[str, Any] = {}
    server = await aiohttp_server(_app(sent))
    replies = []
    for path in ("/whole", "/prepared"):
        target = f"{path}?head=dated-json"
        request = rawhttp.build_request(target=target, close=True)
        replies.append(await rawhttp.send_raw(server.port, request))  # to EOF
    assert replies[0] == replies[1]
    assert b"\r\nConnection: close\r\n" in replies[0]
    assert sent["whole"].keep_alive is False


async def test_only_the_case_it_reproduces_is_sent_whole(
    aiohttp_server: AiohttpServer,
) -> None:
    """HEAD, bodiless statuses, a wrong or missing length and HTTP/1.0 go to prepare."""
    decisions: dict[str, bool] = {}

    def check(request: ProxyRequest, name: str, response: Relayed, body: bytes) -> None:
        decisions[name] = response.sends_whole(request, body)

    async def probe(request: web.Request) -> web.StreamResponse:
        sized = CIMultiDict({"Content-Length": str(len(_JSON))})
        label = request.query["as"]
        check(request, label, Relayed(headers=sized), _JSON)
        if label == "GET":
            check(request, "204", Relayed(status=204, headers=sized), _JSON)
            check(request, "304", Relayed(status=304, headers=sized), _JSON)
            check(request, "no length", Relayed(), _JSON)
            check(request, "short body", Relayed(headers=sized), _JSON[:-1])
            started = Relayed(headers=sized)
            await start_response(started, request)
            check(request, "already prepared", started, _JSON)
            await started.write_eof(_JSON)
            return started
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/probe", probe)
    server = await aiohttp_server(app)
    await rawhttp.send_raw(server.port, rawhttp.build_request(target="/probe?as=GET"))
    head = rawhttp.build_request(method="HEAD", target="/probe?as=HEAD")
    await rawhttp.send_raw(server.port, head)
    old = b"GET /probe?as=HTTP/1.0 HTTP/1.0\r\nHost: proxy\r\n\r\n"
    await rawhttp.send_raw(server.port, old)
    assert decisions == {
        "GET": True,
        "204": False,
        "304": False,
        "no length": False,
        "short body": False,
        "already prepared": False,
        "HEAD": False,
        "HTTP/1.0": False,
    }


async def test_a_client_gone_is_a_connection_error(
    aiohttp_server: AiohttpServer,
) -> None:
    """Writing to a closed connection raises ``ConnectionError``, the relay's signal."""
    raised: list[BaseException] = []

    async def gone(request: web.Request) -> web.StreamResponse:
        response = Relayed(headers={"Content-Length": str(len(_JSON))})
        assert request.transport is not None
        request.transport.close()
        try:
            await response.send_whole(request, _JSON)
        except ConnectionError as err:
            raised.append(err)
        return response

    app = web.Application()
    app.router.add_get("/gone", gone)
    server = await aiohttp_server(app)
    assert (
        await rawhttp.send_raw(server.port, rawhttp.build_request(target="/gone"))
        == b""
    )
    assert len(raised) == 1
