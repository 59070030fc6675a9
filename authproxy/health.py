"""Unauthenticated liveness and readiness endpoints."""

from __future__ import annotations

from typing import Final

import aiohttp
from aiohttp import web

from authproxy.responses import dumps
from authproxy.state import CLIENT_SESSION_KEY, UPSTREAM_KEY, VERIFIER_KEY

READY_TIMEOUT: Final = 2.0
PUBLIC_ROUTES: Final = frozenset({"healthz", "readyz"})


async def healthz(request: web.Request) -> web.Response:
    """Answer 200 while the process serves requests."""
    return web.json_response({"status": "ok"}, dumps=dumps)


async def readyz(request: web.Request) -> web.Response:
    """Answer 200 when the key store is loaded and the upstream answers ``GET /``."""
    if not request.app[VERIFIER_KEY].table.records:
        return web.json_response(
            {"status": "unready", "error": "no keys loaded"}, status=503, dumps=dumps
        )
    upstream = request.app[UPSTREAM_KEY]
    session = request.app[CLIENT_SESSION_KEY]
    try:
        async with session.get(
            upstream.origin,
            headers={"Host": upstream.host_header},
            timeout=aiohttp.ClientTimeout(total=READY_TIMEOUT),
            allow_redirects=False,
        ) as reply:
            await reply.read()
            ok = reply.status == 200
    except (TimeoutError, aiohttp.ClientError, OSError):
        ok = False
    if not ok:
        return web.json_response(
            {"status": "unready", "error": "upstream not answering"},
            status=503,
            dumps=dumps,
        )
    return web.json_response({"status": "ready"}, dumps=dumps)


def setup_health(app: web.Application) -> None:
    """Register ``/healthz`` and ``/readyz`` (before the catch-all route)."""
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
