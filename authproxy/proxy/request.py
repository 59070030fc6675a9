"""What the proxy's pipeline reads from a request: one type for every front.

The edge, the pipeline, the handler, the body readers and the relay take a
``ProxyRequest``, not aiohttp's ``web.Request``: the members below and
nothing else. ``web.Request`` satisfies it (mypy checks that in
``_conforms``), and so must any lighter front that builds its own request
object for plainly shaped requests (the lean front of
bench/results/issue14-levers.md, which measured building and reading
``web.Request`` at about a fifth of the proxy's CPU). One pipeline, so a
check is never written twice.

``start_response`` and ``run_prepare_hook`` are the places a ``ProxyRequest``
meets aiohttp's ``StreamResponse.prepare`` and the request's hook for the
app's ``on_response_prepare`` signals, typed for ``BaseRequest``; prepare
reads only ``_payload_writer``, ``_prepare_hook``, ``version``,
``keep_alive``, ``method``, ``headers`` and ``task`` from it (aiohttp 3.x,
pinned), and every front's request has those.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, cast, overload

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import HttpVersion
from aiohttp.typedefs import Middleware
from aiohttp.web_urldispatcher import UrlMappingMatchInfo
from multidict import CIMultiDictProxy
from yarl import URL

_T = TypeVar("_T")


class BodyReader(Protocol):
    """The request body as the body readers read it (``StreamReader``'s part)."""

    def is_eof(self) -> bool:
        """Tell whether the body's end has arrived (bytes may still be unread)."""

    def read_nowait(self) -> bytes:
        """Return what has arrived and not been read, without waiting."""

    async def readany(self) -> bytes:
        """Return the next bytes as they arrive; ``b""`` at the end."""


class ProxyRequest(Protocol):
    """A request as the pipeline sees it (read-only but for its state)."""

    @property
    def app(self) -> web.Application:
        """The application serving it."""

    @property
    def method(self) -> str:
        """The method, as sent."""

    @property
    def path(self) -> str:
        """The path, percent-decoded (what routing and policy read)."""

    @property
    def raw_path(self) -> str:
        """The target as sent: path and query, still encoded."""

    @property
    def query_string(self) -> str:
        """The query, still encoded, without the ``?``."""

    @property
    def rel_url(self) -> URL:
        """The target as a relative URL."""

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The request headers."""

    @property
    def remote(self) -> str | None:
        """The peer address."""

    @property
    def scheme(self) -> str:
        """``http`` or ``https`` (the listener's, never a header's)."""

    @property
    def version(self) -> HttpVersion:
        """The HTTP version."""

    @property
    def keep_alive(self) -> bool:
        """Whether the connection stays open after the reply (as the client asked)."""

    @property
    def body_exists(self) -> bool:
        """Whether a body was announced."""

    @property
    def content_length(self) -> int | None:
        """``Content-Length``, if sent."""

    @property
    def content(self) -> BodyReader:
        """The body as it arrives."""

    @property
    def transport(self) -> asyncio.Transport | None:
        """The connection (``None`` once closed)."""

    @property
    def writer(self) -> AbstractStreamWriter:
        """Where the reply is written."""

    @property
    def match_info(self) -> UrlMappingMatchInfo:
        """The route that matched."""

    @overload
    def __getitem__(self, key: web.RequestKey[_T]) -> _T: ...
    @overload
    def __getitem__(self, key: str) -> Any: ...
    @overload
    def __setitem__(self, key: web.RequestKey[_T], value: _T) -> None: ...
    @overload
    def __setitem__(self, key: str, value: Any) -> None: ...

    def clone(self, *, rel_url: URL) -> ProxyRequest:
        """The same request seen at ``rel_url`` (a copy of its state)."""
        ...


ProxyHandler = Callable[[ProxyRequest], Awaitable[web.StreamResponse]]
ProxyMiddleware = Callable[[ProxyRequest, ProxyHandler], Awaitable[web.StreamResponse]]


def as_middleware(middleware: ProxyMiddleware) -> Middleware:
    """Register a pipeline middleware with aiohttp.

    aiohttp types the next handler as taking its own ``Request``; the chain
    behind these middlewares is the pipeline's (``proxy_route`` and the
    routes', which take a ``ProxyRequest``) or aiohttp's own for a route it
    handles, which only ever receives the ``web.Request`` aiohttp built.
    """
    return cast(Middleware, middleware)


async def start_response(
    response: web.StreamResponse, request: ProxyRequest
) -> AbstractStreamWriter | None:
    """Send ``response``'s head for ``request`` (``StreamResponse.prepare``)."""
    return await response.prepare(cast(web.BaseRequest, request))


async def run_prepare_hook(request: ProxyRequest, response: web.StreamResponse) -> None:
    """Send the app's ``on_response_prepare`` signals, as ``prepare`` does."""
    await cast(web.BaseRequest, request)._prepare_hook(response)


def _conforms(request: web.Request) -> ProxyRequest:
    # Never called: mypy proves here that aiohttp's request is a ProxyRequest.
    return request
