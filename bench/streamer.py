"""A fast Ollama stand-in that streams NDJSON chunks on a fixed schedule.

Run as ``python -m bench.streamer --port PORT``. It is a raw asyncio protocol
rather than an aiohttp app so that 2,000 streams at 20 chunks/s cost it
little CPU: each chunk is one timer callback and one ``transport.write``.

``POST /api/chat?chunks=N&gap_ms=G`` answers like Ollama's streamed chat:
``application/x-ndjson``, chunked, the headers flushed together with the
first chunk, then one chunk every ``G`` ms, then the ``done:true`` line. Each
chunk's content is ``t=<time.monotonic_ns() when written>``, so a client on
the same machine can tell how long the chunk took to reach it.
``POST /api/chat`` without ``chunks`` returns the recorded non-streamed
reply, and ``GET /`` answers ``Ollama is running`` (what ``/readyz`` probes).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import time
from email.utils import formatdate
from typing import cast
from urllib.parse import parse_qs, urlsplit

from bench import bodies
from bench.loop import run_loop
from tests.support.fake_ollama import wire

_MAX_HEAD = 65536


def _response_head(status: str, content_type: str, framing: str) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n{framing}\r\n\r\n"
    ).encode()


def _fixed(status: str, content_type: str, body: bytes) -> bytes:
    return _response_head(status, content_type, f"Content-Length: {len(body)}") + body


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class _Ticker:
    """Runs due chunk writes in 1 ms slots: one timer per slot, not per chunk.

    With 2,000 streams a slot holds about 40 writes, which keeps the
    streamer's own cost low. Each chunk is still stamped when it is written.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.slots: dict[int, list[_Stream]] = {}

    def add(self, when: float, stream: _Stream) -> None:
        slot = math.ceil(when * 1000)
        bucket = self.slots.get(slot)
        if bucket is None:
            self.slots[slot] = [stream]
            self.loop.call_at(slot / 1000, self._fire, slot)
        else:
            bucket.append(stream)

    def _fire(self, slot: int) -> None:
        created_at = wire.created_at()
        for stream in self.slots.pop(slot, ()):
            stream.tick(created_at)


class _Stream:
    """Writes one scheduled NDJSON stream to a transport."""

    def __init__(
        self, conn: StreamerProtocol, chunks: int, gap: float, ticker: _Ticker
    ) -> None:
        self.conn = conn
        self.chunks = chunks
        self.gap = gap
        self.ticker = ticker
        self.sent = 0
        self.start = ticker.loop.time()
        self.cancelled = False

    def tick(self, created_at: str) -> None:
        transport = self.conn.transport
        if self.cancelled or transport is None or transport.is_closing():
            return
        if self.sent == self.chunks:
            self._finish(transport)
            return
        line = bodies.stamped_chunk(created_at, time.monotonic_ns())
        if self.sent == 0:
            head = _response_head(
                "200 OK", bodies.STREAM_CONTENT_TYPE, "Transfer-Encoding: chunked"
            )
            transport.write(head + _chunk(line))
        else:
            transport.write(_chunk(line))
        self.sent += 1
        self.ticker.add(self.start + self.sent * self.gap, self)

    def _finish(self, transport: asyncio.Transport) -> None:
        transport.write(_chunk(bodies.final_chunk(self.chunks)) + b"0\r\n\r\n")
        self.conn.stream = None
        self.conn.process()

    def cancel(self) -> None:
        self.cancelled = True


class StreamerProtocol(asyncio.Protocol):
    """One client connection: parse requests, answer them in order."""

    def __init__(self, ticker: _Ticker) -> None:
        self.ticker = ticker
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.stream: _Stream | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast("asyncio.Transport", transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stream is not None:
            self.stream.cancel()
            self.stream = None
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > _MAX_HEAD and b"\r\n\r\n" not in self.buf:
            self._close()
            return
        self.process()

    def process(self) -> None:
        """Answer the next complete request unless a stream is running."""
        if self.stream is not None or self.transport is None:
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).decode("latin-1")
        lines = head.split("\r\n")
        method, target, *_ = [*lines[0].split(" "), "", ""]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body_end = end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            term = self.buf.find(b"0\r\n\r\n", body_end)
            if term < 0:
                return
            body_end = term + 5
        else:
            body_end += int(headers.get("content-length", "0") or 0)
            if len(self.buf) < body_end:
                return
        del self.buf[:body_end]
        self._answer(method, target)

    def _answer(self, method: str, target: str) -> None:
        assert self.transport is not None
        url = urlsplit(target)
        query = parse_qs(url.query)
        if method in {"GET", "HEAD"} and url.path == "/":
            self.transport.write(
                _fixed("200 OK", "text/plain; charset=utf-8", b"Ollama is running")
            )
        elif method == "POST" and url.path == bodies.CHAT_PATH and "chunks" in query:
            chunks = max(1, int(query["chunks"][0]))
            gap = float(query.get("gap_ms", ["10"])[0]) / 1000
            self.stream = _Stream(self, chunks, gap, self.ticker)
            self.stream.tick(wire.created_at())
            return
        elif method == "POST" and url.path == bodies.CHAT_PATH:
            self.transport.write(
                _fixed("200 OK", bodies.CHAT_CONTENT_TYPE, bodies.CHAT_REPLY)
            )
        else:
            self.transport.write(
                _fixed("404 Not Found", "text/plain", b"404 page not found")
            )
        self.process()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    bodies.check_template()
    loop = asyncio.get_running_loop()
    ticker = _Ticker(loop)
    server = await loop.create_server(
        lambda: StreamerProtocol(ticker), host, port, backlog=4096
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    run_loop(serve(args.host, args.port))


if __name__ == "__main__":
    main()
