"""One raw-HTTP client: bytes on a loopback connection, for what aiohttp won't send.

Build a request with :func:`build_request`, send it with :func:`send_raw` (all the
server says, until it closes) or :func:`exchange` (the first complete reply), or
hold the connection with :func:`connect` to talk step by step (slow clients,
``Expect: 100-continue``). :func:`parse` splits a reply into status, headers and
JSON body; :func:`comparable` is a reply as two servers' answers compare.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final, NamedTuple

from multidict import CIMultiDict

TIMEOUT: Final = 5.0
_LENGTH: Final = re.compile(rb"\r\nContent-Length: *(\d+)", re.IGNORECASE)


def build_request(
    *headers: str,
    method: str = "GET",
    target: str = "/api/tags",
    body: bytes = b"",
    host: str = "proxy",
    close: bool = True,
) -> bytes:
    """Return an HTTP/1.1 request; header lines are sent exactly as given.

    Lines are encoded with ``surrogateescape`` so a test can send any byte.
    """
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    if close:
        lines.append("Connection: close")
    lines += headers
    head = "\r\n".join(lines).encode("utf-8", "surrogateescape")
    return head + b"\r\n\r\n" + body


def header_lines(headers: Mapping[str, str]) -> list[str]:
    """Turn a header mapping (``bearer``, say) into ``Name: value`` lines."""
    return [f"{name}: {value}" for name, value in headers.items()]


@contextlib.asynccontextmanager
async def connect(
    port: int | None, *, tls: ssl.SSLContext | None = None, sni: str | None = None
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Open a connection to 127.0.0.1:``port``; close it on the way out."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=tls, server_hostname=sni
    )
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def send_raw(port: int | None, data: bytes, *, wait: float = TIMEOUT) -> bytes:
    """Send ``data`` on a new connection; return all the server says until it closes."""
    async with connect(port) as (reader, writer):
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), wait)


async def read_reply(reader: asyncio.StreamReader, *, wait: float = TIMEOUT) -> bytes:
    """Read one reply: its head, then as many body bytes as its Content-Length says."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait)
    length = _LENGTH.search(head)
    if length is None:
        return head
    body = await asyncio.wait_for(reader.readexactly(int(length.group(1))), wait)
    return head + body


async def exchange(port: int | None, data: bytes, *, wait: float = TIMEOUT) -> bytes:
    """Send ``data``; return the first complete reply (the connection may stay open)."""
    async with connect(port) as (reader, writer):
        writer.write(data)
        await writer.drain()
        return await read_reply(reader, wait=wait)


class Reply(NamedTuple):
    """A raw reply split up: the status, the headers, the JSON body (None if empty)."""

    status: int
    headers: CIMultiDict[str]
    json: Any


def parse(reply: bytes) -> Reply:
    """Split a raw reply into its status, headers and JSON body."""
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("ascii").split("\r\n")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines:
        name, _, value = line.partition(":")
        headers.add(name, value.strip())
    return Reply(
        int(status_line.split(" ")[1]), headers, json.loads(body) if body else None
    )


# Fields that differ between any two requests, whoever serves them.
PER_REQUEST: Final = frozenset({"Date", "X-Request-ID"})
# The fake Ollama's timestamps (their length varies too).
_CREATED_AT: Final = re.compile(rb'"created_at":"[^"]*"')


def comparable(
    reply: bytes, *, head: bool = False
) -> tuple[int, list[tuple[str, str]], bytes]:
    """A reply as two servers' answers to one request compare.

    Status, headers but ``PER_REQUEST`` and ``Content-Length`` (sorted), and
    the body without the fake's timestamps. A ``Content-Length`` is checked
    against the reply's own body instead (a reply to ``head`` has none).
    """
    top, _, body = reply.partition(b"\r\n\r\n")
    parsed = parse(top + b"\r\n\r\n")
    if not head and "Content-Length" in parsed.headers:
        assert int(parsed.headers["Content-Length"]) == len(body)
    headers = sorted(
        (k, v)
        for k, v in parsed.headers.items()
        if k not in PER_REQUEST and k != "Content-Length"
    )
    return parsed.status, headers, _CREATED_AT.sub(b"", body)


def status_and_json(reply: bytes) -> tuple[int, Any]:
    """Return a raw reply's status and JSON body."""
    parsed = parse(reply)
    return parsed.status, parsed.json


def closed_port() -> int:
    """Return a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
