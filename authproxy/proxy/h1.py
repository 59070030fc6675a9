"""One keep-alive HTTP/1.1 connection to the upstream: an asyncio protocol, llhttp.

``H1Connection`` writes one request at a time and parses the reply with
httptools (llhttp, the parser aiohttp and uvicorn use). Interim replies (``100
Continue``, ``103``) are skipped; a body framed by length, by chunks or by the
end of the connection is handed on chunk by chunk as the parser yields it,
never re-joined or re-split. Reading pauses past ``HIGH_WATER`` buffered bytes
and a quiet upstream fails with ``read timeout`` (paused reading does not
count as quiet: the client is slow, not the upstream). Failures are
``LeanFailure`` with the reason in the words of ``proxy.upstream``.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections import deque
from typing import Final, cast

import aiohttp
import httptools
from multidict import CIMultiDict, CIMultiDictProxy

HIGH_WATER: Final = 2**17
LOW_WATER: Final = 2**15
_NO_BODY_STATUS: Final = frozenset({204, 304})


class LeanFailure(aiohttp.ClientError):
    """The upstream failed; ``reason`` says how (``upstream closed connection``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LeanTimeout(LeanFailure, TimeoutError):
    """The upstream did not connect or answer in time."""


def _text(raw: bytes) -> str:
    # As aiohttp's parser decodes header names and values.
    return raw.decode("utf-8", "surrogateescape")


def connect_words(err: OSError) -> str:
    """Say why a connection could not be made, in a few words (no address)."""
    if err.errno == errno.ECONNREFUSED:
        return "connect refused"
    words = os.strerror(err.errno).lower() if err.errno is not None else "unknown"
    return f"connect failed ({words})"


class H1Connection(asyncio.Protocol):
    """One connection; the pool (``proxy.lean``) decides when it is reused."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.seen = False  # a byte of the current reply arrived
        self.status = 0
        self.reason = ""
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
        self.keep_alive = False
        self.done = False  # the whole reply was parsed
        self._raw: list[tuple[str, str]] = []
        self._head: asyncio.Future[None] | None = None
        self._head_only = False
        self._interim = False
        self._to_eof = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: LeanFailure | None = None
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self.timeout = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._last = 0.0

    # --- asyncio's side -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport (TCP or TLS; uvloop's is no ``asyncio.Transport``)."""
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        """Feed the parser; bytes nobody asked for close the connection."""
        if self._head is None or self.done:
            self.abort()  # nothing was asked: a confused upstream
            return
        self.seen = True
        self._last = self._loop.time()
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            if not self.done:
                self._fail(LeanFailure("invalid response from upstream"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        """End a body read to EOF, or fail the reply under way."""
        self.closed = True
        self._stop_timer()
        if self._head is not None and not self.done:
            if exc is None and self._to_eof and self._head.done():
                self.done = True  # the body ran to the end of the connection
                self._wake()
            elif isinstance(exc, ConnectionResetError):
                self._fail(LeanFailure("connection reset by upstream"))
            else:
                self._fail(LeanFailure("upstream closed connection"))
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_exception(LeanFailure("upstream closed connection"))
            drain.exception()  # retrieved: no write may be waiting on it

    def pause_writing(self) -> None:
        """Make ``write`` wait: the socket's buffer is full."""
        if self._drain is None:
            self._drain = self._loop.create_future()

    def resume_writing(self) -> None:
        """Let ``write`` go on."""
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # --- the parser's side ------------------------------------------------------

    def on_message_begin(self) -> None:
        """A reply after the whole one: the upstream is confused; drop it after."""
        if self.done:
            self.keep_alive = False
            self.abort()

    def on_status(self, status: bytes) -> None:
        """Keep the reason phrase."""
        self.reason = _text(status)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Keep one header, in order."""
        self._raw.append((_text(name), _text(value)))

    def on_headers_complete(self) -> None:
        """Skip an interim reply; otherwise the head is ready, note the framing."""
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim = True  # skipped: the final reply follows
            self._raw, self.reason = [], ""
            return
        if status == 101:  # never asked for: Upgrade is not forwarded
            raise LeanFailure("invalid response from upstream")
        self.status = status
        headers = CIMultiDictProxy(CIMultiDict(self._raw))
        self.headers = headers
        if self._head_only:
            # llhttp cannot be told the request was HEAD; the connection is
            # not reused, so the parser never reads the next reply as a body.
            self.done = True
        elif status not in _NO_BODY_STATUS and "Content-Length" not in headers:
            coding = headers.get("Transfer-Encoding", "")
            self._to_eof = not coding.lower().rstrip().endswith("chunked")
        head = self._head
        if head is not None and not head.done():
            head.set_result(None)

    def on_body(self, body: bytes) -> None:
        """Buffer body bytes as the parser yields them; pause past high water."""
        if self.done:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        """The reply is whole; note whether the upstream keeps the connection."""
        if self._interim:
            self._interim = False
            return
        if self._head_only:
            return
        self.done = True
        self.keep_alive = self._parser.should_keep_alive()
        self._wake()  # the timer stays: when due it sees the reply done

    # --- the client's side ------------------------------------------------------

    def begin(self, head_only: bool, timeout: float) -> None:
        """Get ready for the next reply (call before writing its request)."""
        self._head = self._loop.create_future()
        self._head_only = head_only
        self.seen = self.done = self.keep_alive = self._to_eof = False
        self.status, self.reason = 0, ""  # known once the reply's head came
        self._raw = []
        self.timeout = timeout

    async def write(self, data: bytes | memoryview) -> None:
        """Write request bytes, waiting while the socket's buffer is full."""
        if self.closed or self.transport is None:
            raise self._error or LeanFailure("upstream closed connection")
        self.transport.write(data)
        if self._drain is not None:
            await self._drain

    async def read_head(self) -> None:
        """Wait for the reply's status and headers.

        Raises:
            LeanFailure: the upstream failed or did not answer in time.
        """
        head = self._head
        if head is None:
            raise LeanFailure("upstream closed connection")
        if not head.done():
            self._last = self._loop.time()
            self._start_timer()
            await head

    def set_timeout(self, timeout: float) -> None:
        """Allow ``timeout`` seconds of silence from now on (0: no limit)."""
        self.timeout = timeout
        self._last = self._loop.time()
        if not timeout:
            self._stop_timer()
        elif not self.done:
            self._start_timer()

    async def readany(self) -> bytes:
        """Return the next body bytes as they came; ``b""`` at the end.

        Raises:
            LeanFailure: the upstream failed mid-body or went quiet.
        """
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self.done:
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft() if len(self._chunks) == 1 else self._join()
        self._buffered -= len(chunk)
        if self._paused and self._buffered < LOW_WATER and self.transport:
            self._paused = False
            self._last = self._loop.time()
            self.transport.resume_reading()
        return chunk

    def abort(self) -> None:
        """Close the connection at once; it is never reused."""
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.abort()

    def ready(self) -> bool:
        """Tell whether ``readany`` would return at once (bytes, the end, a failure)."""
        return bool(self._chunks) or self.done or self._error is not None

    def reusable(self) -> bool:
        """Tell whether the reply was read to its end on a connection kept alive."""
        return self.done and self.keep_alive and not self._chunks and not self.closed

    # --- internals ------------------------------------------------------------

    def _join(self) -> bytes:
        chunk = b"".join(self._chunks)
        self._chunks.clear()
        return chunk

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, err: LeanFailure) -> None:
        self._error = err
        self._stop_timer()
        head = self._head
        if head is not None and not head.done():
            head.set_exception(err)
            head.exception()  # retrieved: a request that was cancelled never reads it
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(err)

    def _start_timer(self) -> None:
        # One timer serves many replies: it re-arms itself while data moves.
        due = self._last + self.timeout
        timer = self._timer
        if timer is not None:
            if timer.when() <= due:
                return
            timer.cancel()
        self._timer = self._loop.call_at(due, self._check) if self.timeout else None

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        # Re-armed lazily: data moves ``_last`` and the timer looks at it when due.
        self._timer = None
        if self.closed or self.done or not self.timeout:
            return
        now = self._loop.time()
        if self._paused or self._chunks:
            self._last = now  # the client is slow, not the upstream
        if now < self._last + self.timeout:
            self._start_timer()
            return
        self._fail(LeanTimeout("read timeout"))
        self.abort()
