"""A shortcut through aiohttp's router for an app of plain paths and one catch-all.

For every request aiohttp's ``Application._handle`` asks the loop for its
debug flag (on Python 3.11 a ``getpid(2)``), walks the URL's parts through the
router's index awaiting each candidate's regular expression, and looks the
middleware chain up in an ``lru_cache``. For the proxy's router, plain paths
(``/healthz``, ``/readyz``, ``/metrics``) and one ``/{tail:.*}`` route for
every method, the answer is known in advance: a plain path's own resource when
the path is exactly one of them, else the catch-all (a plain path asked with
another method falls through to the catch-all in aiohttp too).

``catch_all_handler`` answers the catch-all itself, with the match info and
the middleware chain aiohttp would have built, and hands everything else (a
plain path, an ``Expect`` header, a path the catch-all's pattern would not
match) to ``Application._handle``. An app of any other shape (sub-apps, other
patterns, the admin API) gets ``None``: aiohttp routes it as always.

Warning:
    Relies on aiohttp 3.x internals (``UrlMappingMatchInfo``,
    ``Request._match_info``, what ``web_app._build_middlewares`` chains,
    ``DynamicResource._pattern``), which the version pin keeps stable;
    tests/server/test_fastroute.py checks the answers against aiohttp's own.
"""

from __future__ import annotations

from functools import partial
from typing import Final, NamedTuple, cast

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import (
    DynamicResource,
    PlainResource,
    UrlMappingMatchInfo,
)

from authproxy.memo import remember
from authproxy.proxy.request import ProxyHandler
from authproxy.responses import Handler
from authproxy.web.app import CATCH_ALL

MATCH_MEMO_SIZE: Final = 1024


class CatchAll(NamedTuple):
    """The proxy app's catch-all route, its middleware chain and the plain paths."""

    app: web.Application
    route: web.AbstractRoute
    chain: ProxyHandler
    plain_paths: frozenset[str]
    # Frozen match infos by tail, shared by the requests of one path.
    matches: dict[str, UrlMappingMatchInfo]

    def match_info(self, tail: str) -> UrlMappingMatchInfo:
        """The catch-all's match info for ``tail``, as aiohttp would build it.

        Frozen, and nothing in the chain sets its ``current_app`` (see
        ``_chain``), so one object serves every request of that path, on
        either front; the
        memo is bounded in entries and in their length, since paths are the
        client's.
        """
        match = self.matches.get(tail)
        if match is None:
            match = UrlMappingMatchInfo({"tail": tail}, self.route)
            match.add_app(self.app)
            match.freeze()
            # Ollama's routes are kept; a long path is matched each time.
            remember(self.matches, tail, match, MATCH_MEMO_SIZE)
        return match


def find_catch_all(app: web.Application) -> CatchAll | None:
    """Return the catch-all of a frozen ``app`` shaped as above, else ``None``."""
    if app._has_legacy_middlewares:  # aiohttp builds their chain per request
        return None
    plain: set[str] = set()
    catch_all: web.AbstractRoute | None = None
    expected = DynamicResource(CATCH_ALL)._pattern.pattern
    for resource in app.router.resources():
        if type(resource) is PlainResource:
            plain.add(resource.canonical)
            continue
        routes = list(resource)
        if (
            catch_all is not None
            or type(resource) is not DynamicResource
            or resource._pattern.pattern != expected
            or [r.method for r in routes] != [hdrs.METH_ANY]
        ):
            return None
        catch_all = routes[0]
    if catch_all is None:
        return None
    chain = _chain(app, catch_all)
    return CatchAll(app, catch_all, chain, frozenset(plain), {})


def _chain(app: web.Application, route: web.AbstractRoute) -> ProxyHandler:
    """The app's middlewares around the route's handler, as aiohttp chains them.

    aiohttp's chain (``web_app._build_middlewares``) also wraps everything in
    ``_fix_request_current_app``, which points the match info's
    ``current_app`` at each app in turn for sub-apps; with one app
    ``add_app`` has already set it (aiohttp skips the wrapper itself when an
    app has no middlewares), and it made the lean front build every
    request's match info. The middlewares are the pipeline's, which take a
    ``ProxyRequest`` (aiohttp types them for its own ``Request``).
    """
    handler = route.handler
    for middleware in reversed(app.middlewares):
        handler = partial(middleware, handler=handler)
    return cast(ProxyHandler, handler)


def catch_all_handler(app: web.Application) -> Handler | None:
    """Return a request handler for a frozen ``app`` shaped as above, else ``None``."""
    found = find_catch_all(app)
    if found is None:
        return None
    chain, plain = found.chain, found.plain_paths
    routed = app._handle

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.rel_url.path_safe
        # "." in the pattern matches anything but a newline (a decoded %0A).
        if (
            path in plain
            or path[:1] != "/"
            or "\n" in path
            or hdrs.EXPECT in request.headers
        ):
            return await routed(request)
        tail = path[1:]
        if "%" in tail:  # as aiohttp unquotes a path-safe match
            tail = tail.replace("%2F", "/").replace("%25", "%")
        request._match_info = found.match_info(tail)
        return await chain(request)

    return handle
