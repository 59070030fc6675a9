"""A minimal HTTP/1.1 keep-alive client on raw asyncio protocols, for timing.

wrk measures request throughput and latency; this client measures what wrk
cannot: when each body chunk arrives. It reads ``Content-Length`` and chunked
bodies, which is all Ollama (and our stand-ins) send. It is deliberately
small and cheap per byte, so that 2,000 concurrent streams fit on one core.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

# Called with each piece of body data and the monotonic time it arrived.
BodySink = Callable[[bytes, int], None]


class ProtocolError(Exception):
    """The peer sent something this client does not understand."""


@dataclass(slots=True)
class Reply:
    """One response and the times its parts arrived (``time.monotonic_ns``)."""

    status: int = 0
    sent_ns: int = 0
    first_body_ns: int = 0
    done_ns: int = 0
    body_bytes: int = 0
    body: bytearray = field(default_factory=bytearray)
    keep_alive: bool = True

    @property
    def latency_ms(self) -> float:
        """Return the time from sending to the last byte, in milliseconds."""
        return (self.done_ns - self.sent_ns) / 1e6

    @property
    def ttfb_ms(self) -> float:
        """Return the time from sending to the first body byte, in milliseconds."""
        return (self.first_body_ns - self.sent_ns) / 1e6


class _Parser:
    """Incremental response parser: head, then a sized or chunked body."""

    def __init__(self, reply: Reply, sink: BodySink | None, keep_body: bool) -> None:
        self.reply = reply
        self.sink = sink
        self.keep_body = keep_body
        self.buf = bytearray()
        self.state = "head"
        self.remaining = 0
        self.done = False

    def feed(self, data: bytes, now: int) -> None:
        self.buf += data
        while not self.done and self.buf:
            if not self._step(now):
                return

    def _step(self, now: int) -> bool:
        """Advance one state; return False when more data is needed."""
        match self.state:
            case "head":
                return self._read_head(now)
            case "size":
                return self._read_size(now)
            case "data" | "sized":
                return self._read_data(now)
            case "crlf":
                return self._read_crlf()
            case _:
                return self._read_trailer(now)

    def _read_head(self, now: int) -> bool:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        self._head(bytes(self.buf[:end]), now)
        del self.buf[: end + 4]
        return True

    def _read_size(self, now: int) -> bool:
        buf = self.buf
        end = buf.find(b"\r\n")
        if end < 0:
            return False
        size = int(bytes(buf[:end]).split(b";", 1)[0], 16)
        start = end + 2
        if size and len(buf) >= start + size + 2:
            # Fast path: the whole chunk is here (the usual case).
            self._body(bytes(buf[start : start + size]), now)
            del buf[: start + size + 2]
            return True
        del buf[:start]
        self.remaining = size
        self.state = "data" if size else "trailer"
        return True

    def _read_data(self, now: int) -> bool:
        take = min(self.remaining, len(self.buf))
        self._body(bytes(self.buf[:take]), now)
        del self.buf[:take]
        self.remaining -= take
        if self.remaining == 0:
            if self.state == "sized":
                self._finish(now)
            else:
                self.state = "crlf"
        return take > 0

    def _read_crlf(self) -> bool:
        if len(self.buf) < 2:
            return False
        del self.buf[:2]
        self.state = "size"
        return True

    def _read_trailer(self, now: int) -> bool:
        # An empty line ends the message (trailers are not expected).
        end = self.buf.find(b"\r\n")
        if end < 0:
            return False
        del self.buf[: end + 2]
        if end == 0:
            self._finish(now)
        return True

    def _head(self, head: bytes, now: int) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ProtocolError(f"bad status line {lines[0][:60]!r}")
        self.reply.status = int(parts[1])
        length: int | None = None
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                length = int(value.strip())
            elif key == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif key == b"connection":
                self.reply.keep_alive = b"close" not in value.lower()
        if chunked:
            self.state = "size"
        elif length:
            self.state = "sized"
            self.remaining = length
        else:
            self._finish(now)

    def _body(self, data: bytes, now: int) -> None:
        if not data:
            return
        reply = self.reply
        if not reply.first_body_ns:
            reply.first_body_ns = now
        reply.body_bytes += len(data)
        if self.keep_body:
            reply.body += data
        if self.sink is not None:
            self.sink(data, now)

    def _finish(self, now: int) -> None:
        self.reply.done_ns = now
        self.done = True


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser: _Parser | None = None
        self.waiter: asyncio.Future[Reply] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        parser, waiter = self.parser, self.waiter
        if parser is None or waiter is None or waiter.done():
            return
        try:
            parser.feed(data, now)
        except (ProtocolError, ValueError) as err:
            waiter.set_exception(ProtocolError(str(err)))
            return
        if parser.done:
            waiter.set_result(parser.reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("connection lost"))


class HttpConnection:
    """One keep-alive connection that sends prepared requests one at a time."""

    def __init__(self, protocol: _Protocol) -> None:
        self._protocol = protocol

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        """Connect to ``host:port``."""
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_Protocol, host, port)
        return cls(protocol)

    @property
    def usable(self) -> bool:
        """Tell whether another request may be sent on this connection."""
        return not self._protocol.lost

    async def request(
        self, raw: bytes, sink: BodySink | None = None, *, keep_body: bool = False
    ) -> Reply:
        """Send one complete request and wait for the whole response."""
        protocol = self._protocol
        if protocol.transport is None or protocol.lost:
            raise ConnectionResetError("connection closed")
        reply = Reply()
        protocol.parser = _Parser(reply, sink, keep_body)
        protocol.waiter = asyncio.get_running_loop().create_future()
        reply.sent_ns = time.monotonic_ns()
        protocol.transport.write(raw)
        result = await protocol.waiter
        if not result.keep_alive:
            self.close()
        return result

    def close(self) -> None:
        """Close the connection."""
        if self._protocol.transport is not None:
            self._protocol.transport.close()


def build_request(
    method: str,
    path: str,
    host: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> bytes:
    """Serialise one HTTP/1.1 request with a ``Content-Length`` body."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in {"POST", "PUT", "PATCH"}:
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
