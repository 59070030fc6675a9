"""``create_app(config)``: the proxy application, built by ordered ``setup_*`` calls."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Final

import aiohttp
import structlog
from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from yarl import URL

from authproxy.auth.bruteforce import FailureLimiter
from authproxy.auth.fleet import SharedFailures
from authproxy.config.model import Config, limits_state_file
from authproxy.config.replica import replica_name
from authproxy.limits.admission import LocalAdmission
from authproxy.limits.quotas import KeyLimiter
from authproxy.limits.shared import SharedAdmission
from authproxy.limits.state import kept_counters
from authproxy.metering.audit import AuditWriter
from authproxy.metering.fleet import FleetUsage
from authproxy.metering.recent import RecentRequests
from authproxy.proxy.body import defer_expect
from authproxy.proxy.headers import TrustedProxies, parse_networks
from authproxy.proxy.lean import LeanClient
from authproxy.proxy.request import as_middleware
from authproxy.proxy.upstream import Forwarding, Upstream
from authproxy.state.connection import async_client
from authproxy.tasks import stop
from authproxy.times import Clock, utc_now
from authproxy.web.appkeys import (
    ADMISSION_KEY,
    AUDIT_KEY,
    BRUTE_FORCE_KEY,
    CLOCK_KEY,
    CONFIG_KEY,
    FINISHER_KEY,
    FLEET_USAGE_KEY,
    FORWARDING_KEY,
    KEY_LIMITS_KEY,
    LIFECYCLE_KEY,
    METRICS_KEY,
    RECENT_KEY,
    STREAMS_KEY,
    UPSTREAM_KEY,
    Lifecycle,
)
from authproxy.web.cors import setup_cors
from authproxy.web.edge import edge_middleware
from authproxy.web.finish import Finisher, Sinks
from authproxy.web.health import setup_health
from authproxy.web.keys import setup_keys
from authproxy.web.metrics import setup_metrics
from authproxy.web.pipeline import metrics_route, proxy_route

log = structlog.stdlib.get_logger(__name__)


def create_app(config: Config, *, clock: Clock = utc_now) -> web.Application:
    """Build the proxy application for ``config``."""
    app = web.Application(
        middlewares=[as_middleware(edge_middleware)],
        client_max_size=config.server.max_body_size,
    )
    app[CONFIG_KEY] = config
    app[CLOCK_KEY] = clock
    app[LIFECYCLE_KEY] = Lifecycle()
    app[RECENT_KEY] = RecentRequests()
    app[STREAMS_KEY] = weakref.WeakSet()
    # Order matters. CORS comes first: its middleware answers a preflight
    # before the edge makes a record of it. Metrics next: the other parts
    # report into them.
    # The cleanup contexts start in this order and stop in reverse, so the
    # audit log opens before anything can be served and closes after
    # everything else, with the last records (the finisher, next, records the
    # last turn's requests as it stops); the key store and the limits
    # come next; the upstream session last, so it closes first. The proxy's
    # catch-all route must be registered after every route of its own.
    setup_cors(app, config)
    setup_metrics(app, config)
    setup_audit(app, config)
    setup_finish(app, config)
    setup_keys(app, config, clock)
    setup_limits(app, config, clock)
    setup_upstream(app, config)
    setup_health(app)
    setup_routes(app, config)
    return app


def setup_audit(app: web.Application, config: Config) -> None:
    """Open the audit log before serving; flush and close it last."""
    if not config.audit.enabled:
        return

    async def audit_ctx(app: web.Application) -> AsyncIterator[None]:
        writer = AuditWriter(config.audit)
        # Runs before the server accepts requests, so blocking here is harmless.
        writer.open()
        log.info("audit_opened", path=str(writer.path), seq=writer.state.seq)
        app[AUDIT_KEY] = writer
        try:
            yield
        finally:
            writer.close()

    app.cleanup_ctx.append(audit_ctx)


def setup_finish(app: web.Application, config: Config) -> None:
    """Record finished requests a loop turn at a time (``web.finish``)."""
    replica = replica_name(config.server.replica)

    def sinks() -> Sinks:
        return Sinks(
            app.get(AUDIT_KEY),
            app.get(FLEET_USAGE_KEY),
            app[RECENT_KEY],
            app[METRICS_KEY],
            replica,
        )

    finisher = Finisher(sinks)
    app[FINISHER_KEY] = finisher

    async def finish_ctx(app: web.Application) -> AsyncIterator[None]:
        try:
            yield
        finally:
            finisher.record_waiting()

    app.cleanup_ctx.append(finish_ctx)


def setup_limits(app: web.Application, config: Config, clock: Clock) -> None:
    """Create the brute-force limiter and the per-key limiter with its counters."""
    limits = config.limits
    app[BRUTE_FORCE_KEY] = FailureLimiter(
        threshold=limits.auth_failures,
        window=limits.auth_window,
        cooldown=limits.auth_cooldown,
        max_clients=limits.tracked_clients,
    )
    limiter = KeyLimiter(clock, limits_state_file(config))
    app[KEY_LIMITS_KEY] = limiter
    if config.state.backend == "redis":
        app.cleanup_ctx.append(_shared_limits(config, clock))
        return
    app[ADMISSION_KEY] = LocalAdmission(limiter)

    async def counters_ctx(app: web.Application) -> AsyncIterator[None]:
        async with kept_counters(limiter, config):
            yield

    app.cleanup_ctx.append(counters_ctx)


def _shared_limits(
    config: Config, clock: Clock
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Count the per-key limits in Redis, exact across replicas (limits.shared).

    The fleet's usage counters (metering.fleet) are counted there too.
    """

    async def shared_ctx(app: web.Application) -> AsyncIterator[None]:
        state = config.state
        shared = SharedAdmission(
            async_client(state), state.prefix, clock, lease_ttl=state.lease_ttl
        )
        failures = SharedFailures(
            async_client(state), state.prefix, app[BRUTE_FORCE_KEY]
        )
        app[ADMISSION_KEY] = shared
        counters = FleetUsage(
            async_client(state),
            state.prefix,
            on_failure=app[METRICS_KEY].usage_count_failures.inc,
        )
        app[FLEET_USAGE_KEY] = counters
        tasks = [asyncio.create_task(shared.run()), asyncio.create_task(failures.run())]
        try:
            yield
        finally:
            # Bounded: a follower that lost its cancellation must not hang
            # shutdown; closing the clients below ends its read.
            await stop(tasks)
            await shared.close()
            await counters.flush()
            await counters.client.aclose()
            await failures.client.aclose()

    return shared_ctx


def upstream_of(config: Config) -> Upstream:
    """Return the upstream settings the handler needs, computed once."""
    # A base path keeps its final slash: /readyz probes it, as Ollama's root.
    base = config.upstream.url
    origin = URL(base + "/" if URL(base).raw_path != "/" else base, encoded=True)
    host = config.upstream.host_header or origin.host_port_subcomponent or ""
    return Upstream(
        origin=origin,
        host_header=host,
        trusted_proxies=TrustedProxies(parse_networks(config.server.trusted_proxies)),
        max_body_size=config.server.max_body_size,
        response_timeout=config.upstream.response_timeout,
        idle_timeout=config.upstream.idle_timeout,
        body_idle_timeout=config.limits.body_idle_timeout,
        # sock_read bounds the wait for headers; the relay switches it to
        # idle_timeout.
        # A request's timeout replaces the session's, so it repeats connect.
        client_timeout=aiohttp.ClientTimeout(
            total=None,
            connect=config.upstream.connect_timeout,
            sock_read=config.upstream.response_timeout,
        ),
        include_usage=config.audit.openai_include_usage,
        default_output=config.limits.default_output_reservation,
        strip_origin=bool(config.cors.origins),
    )


def setup_upstream(app: web.Application, config: Config) -> None:
    """Own one client session to Ollama for the application's lifetime."""
    upstream = upstream_of(config)
    app[UPSTREAM_KEY] = upstream

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(
            limit=config.upstream.max_connections, enable_cleanup_closed=True
        )
        async with aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=(
                "User-Agent",
                "Accept",
                "Accept-Encoding",
                "Content-Type",
            ),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=config.upstream.connect_timeout, sock_read=None
            ),
        ) as session:
            lifecycle = app[LIFECYCLE_KEY]
            client = _lean_client(config, upstream)
            app[FORWARDING_KEY] = Forwarding(
                upstream,
                session,
                lambda: lifecycle.stopping,
                app[STREAMS_KEY],
                client=client,
            )
            try:
                yield
            finally:
                if client is not None:
                    await client.close()

    app.cleanup_ctx.append(session_ctx)
    app.on_shutdown.append(_log_open_streams)


def _lean_client(config: Config, upstream: Upstream) -> LeanClient | None:
    """The lean upstream client, unless ``upstream.client`` is ``aiohttp``."""
    if config.upstream.client != "lean":
        return None
    return LeanClient(
        upstream.origin,
        connect_timeout=config.upstream.connect_timeout,
        response_timeout=config.upstream.response_timeout,
        max_connections=config.upstream.max_connections,
        reply_poll=config.upstream.reply_poll_us / 1e6,
    )


# Every path the proxy does not answer itself (server.fastroute finds it directly).
CATCH_ALL: Final = "/{tail:.*}"


def setup_routes(app: web.Application, config: Config) -> None:
    """Register /metrics (when public) and the catch-all proxy route, last."""
    if config.metrics.public:
        path = config.server.root_path + "/metrics"
        app.router.add_get(path, metrics_route, name="metrics")
    app.router.add_route(
        "*", CATCH_ALL, proxy_route, name="proxy", expect_handler=defer_expect
    )
    app.on_response_prepare.append(_hide_server_header)


async def _hide_server_header(
    request: web.Request, response: web.StreamResponse
) -> None:
    # Don't advertise the Python and aiohttp versions to scanners.
    if response.headers.get("Server") == SERVER_SOFTWARE:
        del response.headers["Server"]


async def _log_open_streams(app: web.Application) -> None:
    app[LIFECYCLE_KEY].stopping = True
    open_streams = len(app[STREAMS_KEY])
    if open_streams:
        log.info("shutdown_waiting_for_streams", streams=open_streams)
