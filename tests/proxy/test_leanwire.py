"""proxy.leanwire: a request's head and its body's framing, as aiohttp frames them.

The bytes on a real socket, for each kind of body, are in test_lean.py
(``test_request_bodies_on_the_wire``); these pin the head itself.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
from multidict import CIMultiDict
from yarl import URL

from authproxy.proxy.h1 import LeanFailure
from authproxy.proxy.leanwire import payload, request_head

URL_ = URL("http://ollama/api/chat?x=1")


async def _parts() -> AsyncIterator[bytes]:
    yield b"a"


def _head(method: str, body: object, **headers: str) -> bytes:
    data, stream = payload(body)  # type: ignore[arg-type]
    return request_head(method, URL_, CIMultiDict(headers), data, stream)


def test_payload_splits_bytes_buffers_and_streams() -> None:
    """Bytes go as they are, a buffer as its memory, a stream as a stream."""
    assert payload(b"ab") == (b"ab", None)
    assert payload(None) == (None, None)
    data, stream = payload(io.BytesIO(b"xyz"))
    assert (bytes(data or b""), stream) == (b"xyz", None)
    parts = _parts()
    assert payload(parts) == (None, parts)


@pytest.mark.parametrize(
    ("method", "body", "framing"),
    [
        ("POST", b"abc", b"Content-Length: 3\r\n"),
        ("POST", None, b"Content-Length: 0\r\n"),
        ("DELETE", None, b"Content-Length: 0\r\n"),
        ("GET", None, b""),
        ("HEAD", None, b""),
        ("POST", "stream", b"Transfer-Encoding: chunked\r\n"),
    ],
)
def test_the_body_framing_header(method: str, body: object, framing: bytes) -> None:
    """Sized bodies carry their length, streams go chunked, safe methods bare."""
    sent = _parts() if body == "stream" else body
    head = _head(method, sent, Host="ollama")
    assert head == (
        method.encode()
        + b" /api/chat?x=1 HTTP/1.1\r\nHost: ollama\r\n"
        + framing
        + b"\r\n"
    )


def test_a_given_length_is_not_added_twice() -> None:
    """A client's own Content-Length is the one sent."""
    head = _head("POST", b"abc", **{"Content-Length": "3"})
    assert head.count(b"Content-Length") == 1


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb"])
def test_a_header_that_would_split_is_refused(value: str) -> None:
    """A CR or LF in a value would forge a header upstream: refused."""
    with pytest.raises(LeanFailure, match="invalid request header"):
        _head("GET", None, **{"X-Note": value})
