"""server.plainhttp: the plain request shape, parsed as sent; all else left alone."""

from __future__ import annotations

import pytest

from authproxy.server.plainhttp import MAX_BODY, Limits, plain_request

_LIMITS = Limits(max_line=100, max_field=60, max_headers=4)
_PLAIN = frozenset({"/healthz"})

_OK_HEAD = b"GET /api/tags HTTP/1.1\r\nHost: h\r\n"


def test_a_plain_request_is_parsed_as_sent() -> None:
    """Method, target, trimmed header values, the body and where the next begins."""
    data = (
        b"POST /api/chat?a=b+c HTTP/1.1\r\nHost: h\r\nX-A:  v w \r\n"
        b"Content-Length: 2\r\n\r\n{}GET / HTTP/1.1\r\n"
    )
    parsed = plain_request(data, _LIMITS, _PLAIN)
    assert parsed is not None
    assert (parsed.method, parsed.target, parsed.body) == (
        "POST",
        "/api/chat?a=b+c",
        b"{}",
    )
    assert list(parsed.headers.items()) == [
        ("Host", "h"),
        ("X-A", "v w"),
        ("Content-Length", "2"),
    ]
    assert data[parsed.end :] == b"GET / HTTP/1.1\r\n"
    kept = plain_request(_OK_HEAD + b"Connection: Keep-Alive\r\n\r\n", _LIMITS, _PLAIN)
    assert kept is not None
    get = plain_request(_OK_HEAD + b"\r\n", _LIMITS, _PLAIN)
    assert get is not None
    assert (get.body, get.end) == (b"", len(_OK_HEAD) + 2)


@pytest.mark.parametrize(
    "data",
    [
        _OK_HEAD,  # the head is not whole yet
        b"POST /api/chat HTTP/1.1\r\nContent-Length: 10\r\n\r\n{}",  # nor the body
        b"GET /api/tags HTTP/1.0\r\n\r\n",
        b"HEAD /api/tags HTTP/1.1\r\n\r\n",
        b"DELETE /api/delete HTTP/1.1\r\n\r\n",
        b"GET  /api/tags HTTP/1.1\r\n\r\n",
        b"GET http://h/api/tags HTTP/1.1\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n\r\n",
        b"GET /api/tags%2F HTTP/1.1\r\n\r\n",
        b"GET /api/tags#x HTTP/1.1\r\n\r\n",
        b"GET //api/tags HTTP/1.1\r\n\r\n",
        b"GET /api/../x HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n\r\n",  # the app's own route
        b"GET /healthz?x=1 HTTP/1.1\r\n\r\n",
        _OK_HEAD + b"X-A: \xc3\xa9\r\n\r\n",
        _OK_HEAD + b"X-A:\tv\r\n\r\n",
        _OK_HEAD + b"X-A: v\x01\r\n\r\n",
        _OK_HEAD + b"X-A: v\r\n w\r\n\r\n",  # obsolete folding
        _OK_HEAD + b"X-A: v\nX-B: w\r\n\r\n",  # a bare LF
        _OK_HEAD + b"X-A : v\r\n\r\n",
        _OK_HEAD + b"X(A): v\r\n\r\n",
        _OK_HEAD + b"NoColon\r\n\r\n",
        _OK_HEAD + b"X-A: 1\r\nx-a: 2\r\n\r\n",
        _OK_HEAD + b"Host: again\r\n\r\n",
        _OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n",
        _OK_HEAD + b"Expect: 100-continue\r\n\r\n",
        _OK_HEAD + b"Upgrade: websocket\r\n\r\n",
        _OK_HEAD + b"Connection: close\r\n\r\n",
        _OK_HEAD + b"Connection: keep-alive, X-A\r\n\r\n",
        _OK_HEAD + b"TE: trailers\r\n\r\n",
        _OK_HEAD + b"Content-Length: +2\r\n\r\n{}",
        _OK_HEAD + b"Content-Length: 1,1\r\n\r\n{}",
        _OK_HEAD + b"Content-Length: \r\n\r\n",
        b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n\r\n",  # past the line limit
        _OK_HEAD + b"X-A: " + b"v" * 60 + b"\r\n\r\n",  # past the field limit
        _OK_HEAD + b"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",  # past the count
        b"POST /api/chat HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
        + b"x" * (MAX_BODY + 1),
    ],
)
def test_other_shapes_are_left_to_aiohttp(data: bytes) -> None:
    """Anything but the plain shape is not parsed here at all."""
    assert plain_request(data, _LIMITS, _PLAIN) is None
