"""A lean front for the proxy listener: plainly shaped requests without ``web.Request``.

Building aiohttp's ``web.Request`` for every request and reading it back
(its payload stream, its message, match info, the middleware chain and some
twenty property calls) measured at about a fifth of the proxy's CPU
(bench/results/issue14-levers.md). This protocol serves the common request
itself: it parses the head, builds a ``LeanRequest`` (a ``ProxyRequest`` of
plain attributes) and runs the same middleware chain and proxy route that
aiohttp would have run, writing aiohttp's own response objects through
aiohttp's ``StreamWriter``.

It only serves a request that is whole in the buffer and plainly shaped
(``plain_request``); any other, and everything after it on that connection,
is handed at a request boundary to ``GuardedRequestHandler`` on the same
transport, with the bytes read so far. So every unusual case (a partial or
slow head, chunked or large bodies, ``Expect``, HTTP/1.0, ``Connection:
close``, percent-encoded or dotted paths, repeated or odd headers, the
proxy's own routes) keeps aiohttp's exact answer, and the lean front never
parses anything aiohttp would read differently: it accepts a strict subset.

Its lifecycle follows aiohttp's ``RequestHandler``: a keep-alive deadline
from the connection's start and after each answer, pipelined requests kept
until the one before is answered (reading paused past ``PIPELINE_BYTES``), a
lost connection cancelling its request (``handler_cancellation``), and
``close``/``shutdown`` for the server's graceful stop.

Warning:
    Relies on aiohttp 3.x internals (``web.Server._connections``,
    ``StreamResponse.prepare``'s use of ``_payload_writer`` and
    ``_prepare_hook``), which the version pin keeps stable;
    tests/server/test_leanfront.py checks its answers against aiohttp's own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Final, cast

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_writer import StreamWriter
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.tcp_helpers import tcp_keepalive

from authproxy.server.fastroute import CatchAll
from authproxy.server.leanrequest import Connection, LeanRequest, WholeBody
from authproxy.server.plainhttp import Limits, plain_request

log = structlog.stdlib.get_logger(__name__)

# Bytes of pipelined requests held while one is answered before reading pauses.
PIPELINE_BYTES: Final = 64 * 1024
_INTERNAL_ERROR: Final = json.dumps({"error": "internal error"}).encode()


class LeanFront(BaseProtocol):
    """One connection of the proxy listener, served lean until handed to aiohttp.

    Args:
        server: the listener's ``web.Server``: it tracks this connection and
            builds the ``RequestHandler`` it is handed to (``fallback``).
        fallback: a new aiohttp handler for this connection.
        catch_all: the app, its catch-all route and middleware chain.
        limits: aiohttp's parser limits.
        keepalive_timeout: seconds an idle connection stays open (0: forever).
        tcp_keepalive: turn on TCP keep-alive probes (as aiohttp does).
        access_logger: aiohttp's access logger, or ``None`` when off.
        handler_cancellation: a lost connection cancels its request.
    """

    def __init__(
        self,
        server: web.Server,
        *,
        fallback: Callable[[], asyncio.Protocol],
        catch_all: CatchAll,
        limits: Limits,
        keepalive_timeout: float,
        tcp_keepalive: bool,
        access_logger: AbstractAccessLogger | None,
        handler_cancellation: bool,
    ) -> None:
        super().__init__(asyncio.get_running_loop())
        self._server = server
        self._fallback = fallback
        self.catch_all = catch_all
        self._limits = limits
        self._keepalive = keepalive_timeout
        self._tcp_keepalive = tcp_keepalive
        self._access = access_logger
        self._cancel_on_loss = handler_cancellation
        self._conn: Connection | None = None
        self._task_handler: asyncio.Task[None] | None = None
        self._held = b""  # pipelined bytes waiting for the answer before them
        self._idle_until = 0.0
        self._keepalive_handle: asyncio.TimerHandle | None = None
        self._close = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Track the connection and start its keep-alive deadline (as aiohttp)."""
        super().connection_made(transport)
        if self._tcp_keepalive:
            tcp_keepalive(cast(asyncio.Transport, transport))
        peer = transport.get_extra_info("peername")
        # As aiohttp's request.remote and request.scheme read them.
        remote = str(peer[0]) if isinstance(peer, (list, tuple)) else peer and str(peer)
        tls = transport.get_extra_info("sslcontext") is not None
        self._conn = Connection(
            self.catch_all,
            cast(asyncio.Transport, transport),
            remote,
            "https" if tls else "http",
        )
        self._server._connections[cast(Any, self)] = cast(asyncio.Transport, transport)
        self._rest_until_idle()

    def connection_lost(self, exc: BaseException | None) -> None:
        """Forget the connection; cancel its request if the server says so."""
        self._server.connection_lost(cast(Any, self), exc)
        super().connection_lost(exc)
        self._stop_keepalive()
        task = self._task_handler
        if task is not None and self._cancel_on_loss:
            task.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        """Serve the request that came whole; hold one that came pipelined."""
        if self._task_handler is not None:
            self._held += data
            if len(self._held) > PIPELINE_BYTES:
                self.pause_reading()
            return
        self._serve(data)

    def close(self) -> None:
        """Stop after the request in progress (the server's pre-shutdown)."""
        self._close = True
        if self._task_handler is None and self.transport is not None:
            self.transport.close()

    # The name web.Server.shutdown passes it by.
    async def shutdown(self, timeout: float | None = 15.0) -> None:  # noqa: ASYNC109
        """Let the request in progress finish within ``timeout``, then cancel it."""
        self._close = True
        self._stop_keepalive()
        task = self._task_handler
        if task is not None and not task.done():
            # asyncio.wait: a request that ends cancelled does not raise here.
            _, running = await asyncio.wait({task}, timeout=timeout)
            if running:
                task.cancel()
                await asyncio.wait({task}, timeout=timeout)
        if self.transport is not None:
            self.transport.close()

    def _serve(self, data: bytes) -> None:
        if self._close:
            if self.transport is not None:
                self.transport.close()
            return
        plain = plain_request(data, self._limits, self.catch_all.plain_paths)
        if plain is None or self._conn is None:
            self._hand_off(data)
            return
        self._held = data[plain.end :]
        content = WholeBody(plain.body) if plain.body else EMPTY_PAYLOAD
        writer = StreamWriter(self, self._loop)
        request = LeanRequest(self._conn, plain, plain.target, content, writer)
        task = self._loop.create_task(self._answer(request))
        request.task = task
        self._task_handler = task

    async def _answer(self, request: LeanRequest) -> None:
        started = self._loop.time()
        self._server.requests_count += 1
        try:
            response = await self._respond(request)
            try:
                await response.prepare(cast(web.BaseRequest, request))
                await response.write_eof()
            except ConnectionError:
                # The client left while the reply was written: logged, as
                # aiohttp does, and the connection closed.
                self._close = True
        finally:
            self._task_handler = None
        if self._access is not None:
            self._access.log(
                cast(web.BaseRequest, request), response, self._loop.time() - started
            )
        if not response.keep_alive:
            self._close = True
        self._next()

    async def _respond(self, request: LeanRequest) -> web.StreamResponse:
        try:
            return await self.catch_all.chain(request)
        except web.HTTPException as exc:
            return exc
        except Exception:  # the edge answers everything; a bug if it did not
            log.exception("request_failed")
            response = web.Response(
                status=500, body=_INTERNAL_ERROR, content_type="application/json"
            )
            response.force_close()
            return response

    def _next(self) -> None:
        """After an answer: serve what was held, or rest until the next request."""
        if self.transport is None:
            return
        if self._close:
            self.transport.close()
            return
        held, self._held = self._held, b""
        if self._reading_paused:
            self.resume_reading()
        if held:
            self._serve(held)
        else:
            self._rest_until_idle()

    def _hand_off(self, data: bytes) -> None:
        """Give the connection, and ``data`` read so far, to aiohttp's handler."""
        transport = self.transport
        if transport is None:
            return
        self._stop_keepalive()
        self._server._connections.pop(cast(Any, self), None)
        if self._reading_paused:
            self.resume_reading()
        handler = self._fallback()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self._paused:
            handler.pause_writing()
        if data:
            handler.data_received(data)

    def _rest_until_idle(self) -> None:
        if self._keepalive <= 0:
            return
        self._idle_until = self._loop.time() + self._keepalive
        if self._keepalive_handle is None:
            self._keepalive_handle = self._loop.call_at(
                self._idle_until, self._keepalive_due
            )

    def _keepalive_due(self) -> None:
        # One timer per connection, moved on lazily rather than per request.
        self._keepalive_handle = None
        if self._task_handler is not None or self.transport is None:
            return  # re-armed when the answer is out
        now = self._loop.time()
        if now < self._idle_until:
            self._keepalive_handle = self._loop.call_at(
                self._idle_until, self._keepalive_due
            )
            return
        self.transport.close()

    def _stop_keepalive(self) -> None:
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None
