"""CORS for browser clients, like Ollama's ``OLLAMA_ORIGINS``: ``cors.origins``.

With no origins (the default) nothing here runs and the proxy behaves as it
always did. With some, the proxy answers CORS itself:

- a preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``)
  from an allowed origin is answered ``204`` at once, without credentials,
  before the edge makes a record; it never reaches Ollama;
- every other request goes through the pipeline as before and still needs a
  key; its response (a 401 or any other refusal included, so a browser can read
  the error) carries ``Access-Control-Allow-Origin`` echoing an allowed origin;
- other origins get no CORS headers, and every response says ``Vary: Origin``;
- ``Origin`` is not sent upstream, and Ollama's own CORS headers are dropped,
  so only ``cors.origins`` decides (Ollama would refuse a foreign origin with
  403, or allow its localhost defaults on its own).

An entry is ``*`` (every origin), an exact origin, or an origin with one ``*``
that stands for host name characters or port digits (``http://localhost:*``,
``https://*.example.com``); it never spans ``/``, ``:`` or ``@``. The opaque
origin ``null`` (sandboxed frames, ``file:``) is never allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from aiohttp import hdrs, web

from authproxy.config.model import Config
from authproxy.proxy.request import ProxyHandler, ProxyRequest, as_middleware

ALLOW_METHODS: Final = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
# Ollama's list (shared/ollama-wire.md §8), plus the other credential and the
# headers the anthropic SDK sends from a browser.
ALLOW_HEADERS: Final = ", ".join(
    (
        "Authorization",
        "Content-Type",
        "x-api-key",
        "User-Agent",
        "Accept",
        "X-Requested-With",
        "X-Request-ID",
        "OpenAI-Beta",
        "X-Stainless-Arch",
        "X-Stainless-Async",
        "X-Stainless-Custom-Poll-Interval",
        "X-Stainless-Helper-Method",
        "X-Stainless-Lang",
        "X-Stainless-OS",
        "X-Stainless-Package-Version",
        "X-Stainless-Poll-Helper",
        "X-Stainless-Retry-Count",
        "X-Stainless-Runtime",
        "X-Stainless-Runtime-Version",
        "X-Stainless-Timeout",
        "anthropic-version",
        "anthropic-beta",
        "anthropic-dangerous-direct-browser-access",
    )
)
EXPOSE_HEADERS: Final = "X-Request-ID, Retry-After, WWW-Authenticate"
MAX_AGE: Final = "43200"  # as Ollama; browsers cap it lower (Chrome: 2 h)
_ORIGIN: Final = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#@\s]+")
_WILDCARD: Final = "[a-z0-9.-]+"


class OriginPolicy:
    """Which ``Origin`` values may read the proxy's responses."""

    def __init__(self, entries: Iterable[str]) -> None:
        listed = [e.lower() for e in entries if e]
        self.any = "*" in listed
        self.exact = frozenset(e for e in listed if "*" not in e)
        self._patterns = tuple(
            re.compile(_WILDCARD.join(re.escape(part) for part in e.split("*")))
            for e in listed
            if "*" in e and e != "*"
        )

    def __bool__(self) -> bool:
        return self.any or bool(self.exact) or bool(self._patterns)

    def allows(self, origin: str | None) -> bool:
        """Tell whether a request's ``Origin`` header is an allowed origin."""
        if origin is None:
            return False
        origin = origin.strip().lower()
        if not _ORIGIN.fullmatch(origin):
            return False  # null, or not an origin at all
        if self.any or origin in self.exact:
            return True
        return any(p.fullmatch(origin) for p in self._patterns)


def _is_preflight(request: ProxyRequest) -> bool:
    return (
        request.method == hdrs.METH_OPTIONS
        and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
    )


def setup_cors(app: web.Application, config: Config) -> None:
    """Answer preflights and add CORS headers, if ``cors.origins`` lists any."""
    policy = OriginPolicy(config.cors.origins.split(","))
    if not policy:
        return

    @web.middleware
    async def cors_middleware(
        request: ProxyRequest, handler: ProxyHandler
    ) -> web.StreamResponse:
        """Answer an allowed origin's preflight; everything else goes on."""
        if _is_preflight(request) and policy.allows(request.headers.get(hdrs.ORIGIN)):
            return web.Response(status=204)  # its headers come from cors_headers
        return await handler(request)

    async def cors_headers(request: ProxyRequest, response: web.StreamResponse) -> None:
        """Replace any CORS headers (Ollama's) with the proxy's, just before sending."""
        headers = response.headers
        for name in {n for n in headers if n.lower().startswith("access-control-")}:
            headers.popall(name, None)
        vary = {
            t.strip().lower()
            for v in headers.getall(hdrs.VARY, [])
            for t in v.split(",")
        }
        if not vary & {"origin", "*"}:
            headers.add(hdrs.VARY, "Origin")
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None or not policy.allows(origin):
            return
        headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin.strip()
        if _is_preflight(request):
            headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = ALLOW_METHODS
            headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ALLOW_HEADERS
            headers[hdrs.ACCESS_CONTROL_MAX_AGE] = MAX_AGE
        else:
            headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSE_HEADERS

    # First of all: a preflight is answered before the edge makes a record.
    app.middlewares.insert(0, as_middleware(cors_middleware))
    app.on_response_prepare.append(cors_headers)
