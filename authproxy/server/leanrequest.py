"""The request object of the lean front: a ``ProxyRequest`` of plain attributes.

Everything the pipeline reads is set once from the parsed head
(``server.plainhttp``) and the connection; what aiohttp derives (the
decoded query, the relative URL, the catch-all's match info) is derived
the same way, by the same libraries, when asked.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple, cast

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion, HttpVersion11
from aiohttp.http_writer import StreamWriter
from aiohttp.web_urldispatcher import UrlMappingMatchInfo
from yarl import URL

from authproxy.proxy.request import BodyReader, ProxyRequest
from authproxy.server.fastroute import CatchAll
from authproxy.server.plainhttp import PlainRequest


class Connection(NamedTuple):
    """What a connection's requests share (found once, at its start)."""

    catch_all: CatchAll
    transport: asyncio.Transport
    remote: str | None
    scheme: str


class WholeBody:
    """A body that came whole with its head: a ``BodyReader`` of one bytes object.

    aiohttp's ``StreamReader`` (a buffer, waiters, flow control) is for bodies
    that arrive over time; the lean front only serves bodies already here.
    """

    __slots__ = ("_body",)

    def __init__(self, body: bytes) -> None:
        self._body = body

    def is_eof(self) -> bool:
        """Always: the whole body is here."""
        return True

    def read_nowait(self) -> bytes:
        """Return the body the first time, ``b""`` after."""
        body, self._body = self._body, b""
        return body

    async def readany(self) -> bytes:
        """Return the body the first time, ``b""`` after (never waits)."""
        return self.read_nowait()


class LeanRequest(dict[Any, Any]):
    """A ``ProxyRequest`` of plain attributes; the mapping is the request's state.

    Besides the protocol's members it carries what aiohttp's
    ``StreamResponse.prepare`` reads from a request: ``_payload_writer``,
    ``_prepare_hook``, ``keep_alive`` and ``task``.
    """

    # Attributes in slots: no second dict per request besides the state's.
    __slots__ = (
        "_conn",
        "_match",
        "_payload_writer",
        "_plain",
        "_query",
        "_url",
        "app",
        "body_exists",
        "content",
        "headers",
        "method",
        "path",
        "raw_path",
        "remote",
        "scheme",
        "task",
        "transport",
    )
    version: HttpVersion = HttpVersion11
    keep_alive = True

    def __init__(
        self,
        conn: Connection,
        plain: PlainRequest,
        target: str,
        content: BodyReader,
        writer: StreamWriter,
    ) -> None:
        super().__init__()
        self._conn = conn
        self.app = conn.catch_all.app
        self.method = plain.method
        self._plain = plain
        self.raw_path = target
        path, _, query = target.partition("?")
        self.path = path
        self._query = query
        self.headers = plain.headers
        self.remote = conn.remote
        self.scheme = conn.scheme
        self.transport: asyncio.Transport | None = conn.transport
        self.body_exists = bool(plain.body)
        self.content = content
        self._payload_writer = writer
        self.task: asyncio.Task[None] | None = None
        self._match: UrlMappingMatchInfo | None = None
        self._url: URL | None = None

    @property
    def content_length(self) -> int | None:
        """``Content-Length``, if sent."""
        value = self.headers.get(hdrs.CONTENT_LENGTH)
        return None if value is None else int(value)

    @property
    def query_string(self) -> str:
        """The query, decoded as aiohttp's (yarl's) ``query_string``."""
        return self.rel_url.query_string if self._query else ""

    @property
    def rel_url(self) -> URL:
        """The target as a relative URL, built as aiohttp builds it (once)."""
        if self._url is None:
            self._url = URL.build(
                path=self.path, query_string=self._query, encoded=True
            )
        return self._url

    @property
    def writer(self) -> StreamWriter:
        """Where the reply is written."""
        return self._payload_writer

    @property
    def match_info(self) -> UrlMappingMatchInfo:
        """The catch-all route with its ``tail``, as aiohttp would match it."""
        if self._match is None:
            self._match = self._conn.catch_all.match_info(self.path[1:])
        return self._match

    def clone(self, *, rel_url: URL) -> LeanRequest:
        """The same request seen at ``rel_url``, with a copy of its state."""
        other = LeanRequest(
            self._conn, self._plain, str(rel_url), self.content, self._payload_writer
        )
        other.update(self)
        other.task = self.task
        return other

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        # What web.Request's does: the app's response signals (one app here).
        if signal := self.app.on_response_prepare:
            # The handlers read only what a ProxyRequest has (CORS, Server).
            await signal.send(cast(web.Request, self), response)


def _conforms(request: LeanRequest) -> ProxyRequest:
    # Never called: mypy proves here that LeanRequest is a ProxyRequest.
    return request
