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
import signal
import time
from email.utils import formatdate
from urllib.parse import parse_qs, urlsplit

from bench import bodies
from tests.fake_ollama import wire

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


class _Stream:
    """Writes one scheduled NDJSON stream to a transport."""

    def __init__(
        self,
        conn: StreamerProtocol,
        chunks: int,
        gap: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.conn = conn
        self.chunks = chunks
        self.gap = gap
        self.loop = loop
        self.sent = 0
        self.start = loop.time()
        self.handle: asyncio.TimerHandle | None = None

    def tick(self) -> None:
        transport = self.conn.transport
        if transport is None or transport.is_closing():
            return
        line = bodies.stamped_chunk(wire.created_at(), time.monotonic_ns())
        if self.sent == 0:
            head = _response_head(
                "200 OK", bodies.STREAM_CONTENT_TYPE, "Transfer-Encoding: chunked"
            )
            transport.write(head + _chunk(line))
        else:
            transport.write(_chunk(line))
        self.sent += 1
        if self.sent < self.chunks:
            self.handle = self.loop.call_at(
                self.start + self.sent * self.gap, self.tick
            )
        else:
            self.handle = self.loop.call_at(
                self.start + self.sent * self.gap, self.finish
            )

    def finish(self) -> None:
        transport = self.conn.transport
        if transport is None or transport.is_closing():
            return
        transport.write(_chunk(bodies.final_chunk(self.chunks)) + b"0\r\n\r\n")
        self.handle = None
        self.conn.stream = None
        self.conn.process()

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()


class StreamerProtocol(asyncio.Protocol):
    """One client connection: parse requests, answer them in order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.stream: _Stream | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

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
            loop = asyncio.get_running_loop()
            self.stream = _Stream(self, chunks, gap, loop)
            self.stream.tick()
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
    server = await loop.create_server(StreamerProtocol, host, port, backlog=4096)
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
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
