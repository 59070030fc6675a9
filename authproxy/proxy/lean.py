"""The lean upstream client: a keep-alive pool of ``H1Connection``s to one origin.

``upstream.client: lean`` (the default) sends requests through this instead of
aiohttp's ``ClientSession``: one request per connection at a time, at most
``max_connections`` in use (more wait for one within ``connect_timeout``, as
aiohttp's connector makes them wait), idle ones kept ``KEEPALIVE`` seconds.

**The one retry.** A pooled connection the upstream closed while idle fails
the next request sent on it. That request is sent once more, on a new
connection, only if: the connection was reused; not a byte of reply came back;
it is not a timeout; the method is safe (``GET``, ``HEAD``, ``OPTIONS``,
``TRACE``: repeating it changes nothing even if the upstream saw it); and the
body can be sent again (none, or bytes; never a client's stream). Anything
else fails as it happened (``POST /api/chat`` so cut is a 502, as with aiohttp).
While a reply's head is awaited the loop polls for it for up to ``reply_poll``
seconds instead of sleeping (``proxy.replypoll``). Pool times are
``time.monotonic()`` (``get_running_loop()`` is a ``getpid(2)``).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import deque
from types import TracebackType
from typing import Final

from multidict import CIMultiDict
from yarl import URL

from authproxy.proxy.h1 import H1Connection, LeanFailure, LeanTimeout, connect_words
from authproxy.proxy.leanwire import (
    SAFE_METHODS,
    Body,
    payload,
    request_head,
    write_request,
)
from authproxy.proxy.replypoll import ReplyPoll

KEEPALIVE: Final = 15.0  # aiohttp's keepalive_timeout


class LeanClient:
    """Connections to one upstream origin, reused while they stay healthy."""

    def __init__(
        self,
        origin: URL,
        *,
        connect_timeout: float,
        response_timeout: float,
        max_connections: int,
        reply_poll: float = 0.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._host, self._port = origin.raw_host or "", origin.port
        https = origin.scheme == "https"
        self._tls = (ssl_context or ssl.create_default_context()) if https else None
        self.connect_timeout = connect_timeout
        self.response_timeout = response_timeout
        self.max_connections = max_connections
        self.reply_poll = ReplyPoll(reply_poll)
        self._idle: list[H1Connection] = []
        self.in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def request(
        self, method: str, url: URL, headers: CIMultiDict[str], body: Body = None
    ) -> Call:
        """Send one request; use as ``async with client.request(...) as reply``."""
        return Call(self, method, url, headers, body)

    @property
    def idle(self) -> int:
        """How many open connections wait in the pool."""
        return sum(not conn.closed for conn in self._idle)

    async def close(self) -> None:
        """Close every idle connection; those in use close when released."""
        self._closed = True
        for conn in self._idle:
            conn.abort()
        self._idle.clear()

    async def send(
        self, method: str, url: URL, headers: CIMultiDict[str], body: Body
    ) -> LeanResponse:
        """Send the request and wait for the reply's headers (see the retry rule).

        Raises:
            LeanFailure: the upstream could not be reached or did not answer.
        """
        data, stream = payload(body)
        head = request_head(method, url, headers, data, stream)
        replayable = stream is None and method in SAFE_METHODS
        fresh = False
        while True:
            conn = await self._acquire(fresh)
            try:
                conn.begin(method == "HEAD", self.response_timeout)
                await write_request(
                    conn, head, data, stream, "Content-Length" in headers
                )
                started = self.reply_poll.begin()
                try:
                    await conn.read_head()
                finally:
                    self.reply_poll.end(started)
            except LeanFailure as err:
                self.release(conn, keep=False)
                retry = conn.reused and not conn.seen and not fresh and replayable
                if retry and not isinstance(err, LeanTimeout):
                    fresh = True
                    continue
                raise
            except BaseException:
                self.release(conn, keep=False)
                raise
            return LeanResponse(self, conn, url)

    def release(self, conn: H1Connection | None, *, keep: bool) -> None:
        """Give a slot back, and its connection: pooled when ``keep``, else closed."""
        self.in_use -= 1
        if conn is not None and keep and not self._closed and conn.reusable():
            conn.reused = True
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        elif conn is not None:
            conn.abort()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    async def _acquire(self, fresh: bool) -> H1Connection:
        if self.in_use < self.max_connections and not fresh:
            conn = self._pooled()
            if conn is not None:
                self.in_use += 1
                return conn
        try:
            async with asyncio.timeout(self.connect_timeout or None):
                while self.in_use >= self.max_connections:
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiters.append(waiter)
                    await waiter
                self.in_use += 1
                try:
                    return (None if fresh else self._pooled()) or await self._connect()
                except BaseException:
                    self.release(None, keep=False)
                    raise
        except TimeoutError:
            raise LeanTimeout("connect timeout") from None

    def _pooled(self) -> H1Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            transport = conn.transport
            if conn.closed or transport is None or transport.is_closing():
                continue
            if now - conn.idle_since > KEEPALIVE:
                conn.abort()
                continue
            return conn
        return None

    async def _connect(self) -> H1Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                lambda: H1Connection(loop),
                self._host,
                self._port or (443 if self._tls else 80),
                ssl=self._tls,
                server_hostname=self._host if self._tls else None,
            )
        except ssl.SSLCertVerificationError as err:
            detail = err.verify_message or err.reason or "untrusted"
            raise LeanFailure(f"TLS certificate verify failed ({detail})") from None
        except ssl.SSLError as err:
            detail = err.reason or "protocol error"
            raise LeanFailure(f"TLS handshake failed ({detail})") from None
        except socket.gaierror:
            raise LeanFailure(f"DNS lookup failed ({self._host})") from None
        except OSError as err:
            raise LeanFailure(connect_words(err)) from None
        return conn


class Call:
    """``async with`` one request: the reply, then its connection given back."""

    __slots__ = ("_args", "_client", "_reply")

    def __init__(
        self,
        client: LeanClient,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        body: Body,
    ) -> None:
        self._client = client
        self._args = (method, url, headers, body)
        self._reply: LeanResponse | None = None

    async def __aenter__(self) -> LeanResponse:
        self._reply = await self._client.send(*self._args)
        return self._reply

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reply is not None:
            self._reply.release(keep=kind is None)


class LeanResponse:
    """The reply as the relay reads it (the part of aiohttp's it uses)."""

    __slots__ = ("_client", "_conn", "headers", "reason", "status", "url")

    def __init__(self, client: LeanClient, conn: H1Connection, url: URL) -> None:
        self._client: LeanClient | None = client
        self._conn = conn
        self.url = url
        self.status = conn.status
        self.reason = conn.reason
        self.headers = conn.headers

    @property
    def content(self) -> LeanResponse:
        """The body reader (``readany``), as ``ClientResponse.content``."""
        return self

    async def readany(self) -> bytes:
        """Return the next body bytes as they came; ``b""`` at the end."""
        return await self._conn.readany()

    async def read(self) -> bytes:
        """Read the whole body."""
        chunks = []
        while chunk := await self._conn.readany():
            chunks.append(chunk)
        return b"".join(chunks)

    def ready(self) -> bool:
        """Tell whether body bytes (or the body's end) are already here."""
        return self._conn.ready()

    def done(self) -> bool:
        """Tell whether the whole body is here."""
        return self._conn.done

    def set_read_timeout(self, timeout: float) -> None:
        """Allow ``timeout`` seconds of silence between body bytes (0: no limit)."""
        self._conn.set_timeout(timeout)

    def close(self) -> None:
        """Close the connection: the reply will not be read further."""
        self.release(keep=False)

    def release(self, *, keep: bool) -> None:
        """Give the connection back once (kept only if the reply was read whole)."""
        client, self._client = self._client, None
        if client is not None:
            client.release(self._conn, keep=keep)
