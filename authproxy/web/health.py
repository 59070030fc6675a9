"""Unauthenticated liveness and readiness endpoints."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Final

import aiohttp
from aiohttp import web

from authproxy.keys.feed import KeyFeed
from authproxy.responses import dumps
from authproxy.web.appkeys import FORWARDING_KEY, VERIFIER_KEY, WATCHER_KEY

READY_TIMEOUT: Final = 2.0
# Probes come from every kubelet, load balancer and monitor; one upstream
# request per second answers them all, so /readyz cannot be used to flood
# Ollama through the proxy without a credential.
READY_CACHE_SECONDS: Final = 1.0
PUBLIC_ROUTES: Final = frozenset({"healthz", "readyz"})


class CachedProbe:
    """Run a probe at most once per ``ttl``; callers meanwhile share its answer."""

    def __init__(
        self, ttl: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.runs = 0
        self._monotonic = monotonic
        self._answer = False
        self._at = -math.inf
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._monotonic() - self._at < self.ttl

    async def check(self, probe: Callable[[], Awaitable[bool]]) -> bool:
        """Return the cached answer, or run ``probe`` once for all who wait."""
        if self._fresh():
            return self._answer
        async with self._lock:
            if not self._fresh():
                self._answer = await probe()
                self._at = self._monotonic()
                self.runs += 1
        return self._answer


async def healthz(request: web.Request) -> web.Response:
    """Answer 200 while the process serves requests."""
    return web.json_response({"status": "ok"}, dumps=dumps)


async def _upstream_answers(request: web.Request) -> bool:
    fwd = request.app[FORWARDING_KEY]
    upstream = fwd.upstream
    try:
        async with fwd.session.get(
            upstream.origin,
            headers={"Host": upstream.host_header},
            timeout=aiohttp.ClientTimeout(total=READY_TIMEOUT),
            allow_redirects=False,
        ) as reply:
            await reply.read()
            return reply.status == 200
    except (TimeoutError, aiohttp.ClientError, OSError):
        return False


def setup_health(app: web.Application) -> CachedProbe:
    """Register ``/healthz`` and ``/readyz`` (before the catch-all route).

    Returns:
        The upstream probe behind ``/readyz`` (its ``runs`` count is for tests).
    """
    probe = CachedProbe(READY_CACHE_SECONDS)

    async def readyz(request: web.Request) -> web.Response:
        """Answer 200 when the key store is loaded and current, and Ollama answers."""
        watcher = request.app[WATCHER_KEY]
        if isinstance(watcher, KeyFeed) and not watcher.fresh():
            return web.json_response(
                {
                    "status": "unready",
                    "error": "key store unavailable",
                    "detail": watcher.state(),
                },
                status=503,
                dumps=dumps,
            )
        if not request.app[VERIFIER_KEY].table.records:
            return web.json_response(
                {"status": "unready", "error": "no keys loaded"},
                status=503,
                dumps=dumps,
            )
        if not await probe.check(lambda: _upstream_answers(request)):
            return web.json_response(
                {"status": "unready", "error": "upstream not answering"},
                status=503,
                dumps=dumps,
            )
        return web.json_response({"status": "ready"}, dumps=dumps)

    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
    return probe
