"""The HTTP server layer: a header-read deadline and safe replies to malformed HTTP.

aiohttp's parser rejects ambiguous framing (Content-Length with
Transfer-Encoding, duplicate Content-Length, obsolete line folding) and control
characters by itself, but its 400 reply quotes the offending bytes, which may
be a credential, and it has no deadline for reading request headers
(slowloris). This module fixes both, by subclassing aiohttp's request handler.

Warning:
    It relies on aiohttp 3.x internals (``RequestHandler._messages``,
    ``_current_request``, ``_request_count``, ``Server._kwargs``,
    ``StreamResponse._prepare_headers``), which the version pin keeps stable;
    ``tests/test_hostile.py`` and ``tests/test_redirect.py`` exercise every hook.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Final, cast

import structlog
from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.log import access_logger as aiohttp_access_logger
from aiohttp.web_log import AccessLogger as AiohttpAccessLogger
from aiohttp.web_protocol import RequestHandler

from authproxy.config.model import Config
from authproxy.server.fastroute import CatchAll, catch_all_handler, find_catch_all
from authproxy.server.leanfront import LeanFront
from authproxy.server.logs import AccessLogger
from authproxy.server.plainhttp import Limits

log = structlog.stdlib.get_logger(__name__)

_CREDENTIAL_LINE: Final = re.compile(rb"b'(authorization|x-api-key)\s*:", re.IGNORECASE)
_CHALLENGES: Final = (
    ("WWW-Authenticate", 'Basic realm="authproxy", charset="UTF-8"'),
    ("WWW-Authenticate", 'Bearer realm="authproxy"'),
)


def _reply(
    exc: BaseException | None, *, challenge: bool
) -> tuple[int, str, tuple[tuple[str, str], ...]]:
    """Choose status, message and headers for a malformed request; never echo it."""
    if isinstance(exc, LineTooLong) or "Too many headers" in str(exc):
        return 431, "request line or headers too large", ()
    text = str(exc).encode("utf-8", "backslashreplace")
    bad_credential = "header value char" in str(exc) and _CREDENTIAL_LINE.search(text)
    if challenge and bad_credential:
        # A control character inside a credential: the same 401 as any bad key.
        return 401, "unauthorized", _CHALLENGES
    return 400, "bad request", ()


class _ErrorResponse(web.Response):
    """A reply to a malformed request, without aiohttp's ``Server`` header."""

    async def _prepare_headers(self) -> None:
        # The apps drop the header in on_response_prepare, which never runs
        # for a request that did not parse: no versions for scanners here either.
        await super()._prepare_headers()
        self.headers.popall(hdrs.SERVER, None)


class GuardedRequestHandler(RequestHandler):
    """aiohttp's handler plus a header deadline and non-echoing parser errors."""

    def __init__(
        self,
        manager: web.Server,
        *,
        header_timeout: float,
        challenge: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._challenge = challenge
        self._header_deadline: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        """Start the header deadline when a new request begins to arrive.

        It is started after parsing, at the same moment, and only when the
        request is not whole yet: most arrive in one read, and a timer
        started and cancelled for each of them costs more than its check.
        """
        idle = self._current_request is None and not self._messages
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:
            self._stop_deadline()
        elif idle and self._header_deadline is None and self._header_timeout > 0:
            self._header_deadline = self._loop.call_later(
                self._header_timeout, self._headers_too_slow
            )

    def connection_lost(self, exc: BaseException | None) -> None:
        """Drop the deadline with the connection."""
        self._stop_deadline()
        super().connection_lost(exc)

    def _stop_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        log.warning("request_header_timeout", timeout=self._header_timeout)
        if self.transport is not None:
            self.transport.close()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Answer malformed requests with JSON that never quotes their bytes."""
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        log.info("bad_http_request", status=status, error=type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        code, text, headers = _reply(exc, challenge=self._challenge)
        response = _ErrorResponse(
            status=code,
            body=json.dumps({"error": text}, separators=(",", ":")).encode(),
            content_type="application/json",
        )
        for name, value in headers:
            response.headers.add(name, value)
        response.force_close()
        return response


class GuardedServer(web.Server):
    """A ``web.Server`` whose connections use ``GuardedRequestHandler``.

    With ``lean_front`` (the proxy app's catch-all), each connection starts
    on ``server.leanfront.LeanFront``, which hands it to a
    ``GuardedRequestHandler`` at the first request it does not serve itself.
    """

    def __init__(
        self,
        *args: Any,
        header_timeout: float,
        challenge: bool = True,
        lean_front: CatchAll | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.challenge = challenge
        self._lean_front = lean_front
        kw = self._kwargs
        self._limits = Limits(
            max_line=kw.get("max_line_size", 8190),
            max_field=kw.get("max_field_size", 8190),
            max_headers=kw.get("max_headers", 128),
        )
        # The access logger aiohttp's handler would build (None: turned off).
        access_log = kw.get("access_log", aiohttp_access_logger)
        self._access_logger = (
            kw.get("access_log_class", AiohttpAccessLogger)(
                access_log, kw.get("access_log_format", AiohttpAccessLogger.LOG_FORMAT)
            )
            if access_log
            else None
        )

    def __call__(self) -> RequestHandler:
        """Create the protocol for one connection."""
        if self._lean_front is None:
            return self.guarded_handler()
        access = self._access_logger
        front = LeanFront(
            self,
            fallback=self.guarded_handler,
            catch_all=self._lean_front,
            limits=self._limits,
            keepalive_timeout=self._kwargs.get("keepalive_timeout", 3630),
            tcp_keepalive=self._kwargs.get("tcp_keepalive", True),
            access_logger=access if access is not None and access.enabled else None,
            handler_cancellation=self.handler_cancellation,
        )
        # A protocol like RequestHandler to web.Server and the loop.
        return cast(RequestHandler, front)

    def guarded_handler(self) -> GuardedRequestHandler:
        """Create aiohttp's handler for one connection, with our guards."""
        return GuardedRequestHandler(
            self,
            loop=self._loop,
            header_timeout=self.header_timeout,
            challenge=self.challenge,
            **self._kwargs,
        )


class GuardedAppRunner(web.AppRunner):
    """An ``AppRunner`` serving through ``GuardedServer``.

    Args:
        app: the application to serve.
        header_timeout: seconds a client has to send a request's headers
            (0: no deadline).
        challenge: answer a control character inside a credential header with
            the proxy's 401 and its ``WWW-Authenticate`` challenges; without it
            such a request gets the plain 400 (listeners that take no
            credentials must not invite a client to send some).
        fast_route: route past aiohttp's router when the app's shape allows
            it (``server.fastroute``); off only to compare with aiohttp's own.
        lean_front: serve plainly shaped requests to such an app with
            ``server.leanfront`` (``server.front: lean``).
        **kwargs: passed on to ``web.AppRunner``.
    """

    def __init__(
        self,
        app: web.Application,
        *,
        header_timeout: float,
        challenge: bool = True,
        fast_route: bool = True,
        lean_front: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout = header_timeout
        self._challenge = challenge
        self._fast_route = fast_route
        self._lean_front = lean_front

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        handler = (catch_all_handler(self._app) if self._fast_route else None) or (
            plain.request_handler
        )
        return GuardedServer(
            handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            header_timeout=self._header_timeout,
            challenge=self._challenge,
            lean_front=(
                find_catch_all(self._app)
                if self._fast_route and self._lean_front
                else None
            ),
            **plain._kwargs,
        )


def server_kwargs(config: Config) -> dict[str, Any]:
    """Return the aiohttp server settings every listener and the tests share.

    ``serve`` adds ``handler_cancellation=True``, which aiohttp's test server
    always sets: a handler is cancelled when its client disconnects, and
    closing the upstream request is the only signal that makes Ollama stop.
    """
    return {
        # Request bodies are relayed verbatim (Ollama decodes zstd on /v1).
        "auto_decompress": False,
        "access_log_class": AccessLogger,
        **({} if config.log.access else {"access_log": None}),
        "keepalive_timeout": config.server.keepalive_timeout,
        "shutdown_timeout": config.server.shutdown_timeout,
        "max_line_size": config.limits.max_request_line,
        "max_field_size": config.limits.max_header_size,
        "max_headers": config.limits.max_headers,
    }
