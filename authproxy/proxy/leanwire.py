"""What the lean client writes: a request's head and body, framed as aiohttp does.

A body of known size goes with its ``Content-Length`` (a small one in the same
send as the head), one of unknown size chunked; a bodyless unsafe method gets
``Content-Length: 0`` and a safe one none, as aiohttp sends them.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Final

from multidict import CIMultiDict
from yarl import URL

from authproxy.proxy.h1 import H1Connection, LeanFailure

# Sent without a body get no ``Content-Length: 0`` (as aiohttp); the pool
# retries only these.
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_JOIN_BELOW: Final = 64 * 1024
Body = bytes | io.BytesIO | AsyncIterator[bytes] | None


def payload(
    body: Body,
) -> tuple[bytes | memoryview | None, AsyncIterator[bytes] | None]:
    """Split a body into bytes to send at once, or a stream to send as it comes."""
    if body is None or isinstance(body, bytes):
        return body, None
    if isinstance(body, io.BytesIO):
        return body.getbuffer(), None
    return None, body


def request_head(
    method: str,
    url: URL,
    headers: CIMultiDict[str],
    data: bytes | memoryview | None,
    stream: AsyncIterator[bytes] | None,
) -> bytes:
    """The request line and headers, with the body's framing header added.

    Raises:
        LeanFailure: a header name or value holds a CR or LF.
    """
    lines = [f"{method} {url.raw_path_qs} HTTP/1.1\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
    if "Content-Length" not in headers:
        if stream is not None:
            lines.append("Transfer-Encoding: chunked\r\n")
        elif data is not None:
            lines.append(f"Content-Length: {len(data)}\r\n")
        elif method not in SAFE_METHODS:
            lines.append("Content-Length: 0\r\n")
    lines.append("\r\n")
    text = "".join(lines)
    # One line each: a CR or LF inside a value would split a header in two.
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        raise LeanFailure("invalid request header")
    return text.encode("utf-8", "surrogateescape")


async def write_request(
    conn: H1Connection,
    head: bytes,
    data: bytes | memoryview | None,
    stream: AsyncIterator[bytes] | None,
    sized: bool,
) -> None:
    """Send the head and body: one send for a small body; chunked when unsized."""
    if stream is None:
        if data is not None and len(data) <= _JOIN_BELOW:
            await conn.write(head + data)  # one send for a small request
        else:
            await conn.write(head)
            if data is not None:
                await conn.write(data)
        return
    await conn.write(head)
    try:
        async for chunk in stream:
            if chunk:
                await conn.write(
                    chunk if sized else b"%x\r\n%b\r\n" % (len(chunk), chunk)
                )
        if not sized:
            await conn.write(b"0\r\n\r\n")
    except LeanFailure:
        if not conn.status:
            raise  # else the upstream answered before the body's end: read that
