"""The security headers every console response carries, set just before sending.

They are added in ``on_response_prepare``, which fires for every response
routed into the console (pages, static files, errors raised by the admin
listener's outer middlewares), just before its headers go on the wire, so a
streamed or file response gets them too.
"""

from __future__ import annotations

from typing import Final

from aiohttp import hdrs, web

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS: Final = (
    ("Content-Security-Policy", CSP),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)
STATIC_PREFIX: Final = "/admin/ui/static/"
# Static links carry ?v=<version>, so an upgrade is a new URL.
STATIC_CACHE: Final = "public, max-age=31536000, immutable"
NO_STORE: Final = "no-store"


async def add_security_headers(
    request: web.Request, response: web.StreamResponse
) -> None:
    """Set the CSP, framing, sniffing and referrer headers, and the cache rule."""
    for name, value in SECURITY_HEADERS:
        response.headers[name] = value
    static = request.path.startswith(STATIC_PREFIX) and response.status == 200
    response.headers[hdrs.CACHE_CONTROL] = STATIC_CACHE if static else NO_STORE


def setup_security_headers(app: web.Application) -> None:
    """Register the headers on the console sub-application's responses."""
    app.on_response_prepare.append(add_security_headers)
