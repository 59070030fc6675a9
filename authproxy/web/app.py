"""``create_app(config)``: the application factory and its life-cycle contexts."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from yarl import URL

from authproxy.auth.middleware import setup_auth
from authproxy.auth.principal import VerifyStats
from authproxy.auth.verify import Verifier
from authproxy.config.model import Config, signing_key_file
from authproxy.keys.signing import load_signing_keys
from authproxy.keys.store import KeyTable, make_hasher, update_store
from authproxy.keys.watch import KeyStoreWatcher
from authproxy.limits.middleware import setup_limits
from authproxy.metering.audit import AuditWriter
from authproxy.metering.exchange import audit_middleware
from authproxy.metering.metrics import CONTENT_TYPE, Metrics
from authproxy.proxy.body import defer_expect
from authproxy.proxy.handler import Upstream, proxy_handler
from authproxy.proxy.headers import TrustedProxies, parse_networks
from authproxy.responses import error_middleware, json_error
from authproxy.server.logs import AccessLogger
from authproxy.times import Clock, utc_now
from authproxy.web.appkeys import (
    AUDIT_KEY,
    CLIENT_SESSION_KEY,
    CLOCK_KEY,
    CONFIG_KEY,
    LIFECYCLE_KEY,
    METRICS_KEY,
    PRINCIPAL_KEY,
    STREAMS_KEY,
    UPSTREAM_KEY,
    VERIFIER_KEY,
    WATCHER_KEY,
    Lifecycle,
)
from authproxy.web.context import request_context_middleware
from authproxy.web.health import setup_health

log = structlog.stdlib.get_logger(__name__)


def create_app(config: Config, *, clock: Clock = utc_now) -> web.Application:
    """Build the proxy application for ``config``."""
    app = web.Application(
        middlewares=[request_context_middleware, audit_middleware, error_middleware],
        client_max_size=config.server.max_body_size,
    )
    app[CONFIG_KEY] = config
    app[CLOCK_KEY] = clock
    app[STREAMS_KEY] = weakref.WeakSet()
    app[UPSTREAM_KEY] = _upstream(config)
    app[LIFECYCLE_KEY] = Lifecycle()
    setup_metrics(app, config)
    if config.audit.enabled:
        app.cleanup_ctx.append(_audit_ctx)
    setup_keys(app, config, clock)
    setup_limits(app, config, clock)
    setup_auth(app)
    app.cleanup_ctx.append(_client_session_ctx)
    setup_health(app)
    if config.metrics.public:
        app.router.add_get("/metrics", metrics_handler, name="metrics")
    app.router.add_route(
        "*", "/{tail:.*}", proxy_handler, name="proxy", expect_handler=defer_expect
    )
    app.on_response_prepare.append(_hide_server_header)
    app.on_shutdown.append(_log_open_streams)
    return app


def server_kwargs(config: Config) -> dict[str, Any]:
    """Return the aiohttp server settings shared by ``serve`` and the tests.

    ``serve`` adds ``handler_cancellation=True``, which aiohttp's test server
    always sets: a handler is cancelled when its client disconnects, and
    closing the upstream request is the only signal that makes Ollama stop.
    """
    return {
        # Request bodies are relayed verbatim (Ollama accepts zstd on /v1).
        "auto_decompress": False,
        "access_log_class": AccessLogger,
        **({} if config.log.access else {"access_log": None}),
        "keepalive_timeout": config.server.keepalive_timeout,
        "shutdown_timeout": config.server.shutdown_timeout,
        "max_line_size": config.limits.max_request_line,
        "max_field_size": config.limits.max_header_size,
        "max_headers": config.limits.max_headers,
    }


def usable_cpus() -> int:
    """Return how many CPUs this process may run on (a container's cpuset, taskset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def setup_keys(app: web.Application, config: Config, clock: Clock) -> None:
    """Create the verifier and the store watcher, started in ``cleanup_ctx``."""
    keys = config.keys
    path = Path(keys.file)
    workers = keys.verify_workers or usable_cpus()

    def persist_hash(key_id: str, old_hash: str, new_hash: str) -> None:
        def change(table: KeyTable) -> tuple[KeyTable, None]:
            record = table.by_id.get(key_id)
            if record is None or record.hash != old_hash:
                return table, None
            return table.replace(dataclasses.replace(record, hash=new_hash)), None

        update_store(path, change)

    async def keys_ctx(app: web.Application) -> AsyncIterator[None]:
        verifier = Verifier(
            make_hasher(keys.argon2),
            workers=workers,
            queue=keys.verify_queue,
            cache_ttl=keys.cache_ttl,
            cache_size=keys.cache_size,
            clock=clock,
            persist_hash=persist_hash,
            on_verify=app[METRICS_KEY].argon2_seconds.observe,
        )
        jwt_config, jwt_path = config.jwt, signing_key_file(config)
        watcher = KeyStoreWatcher(
            path,
            verifier,
            keys.reload_interval,
            signing=lambda: load_signing_keys(jwt_config, jwt_path),
            signing_path=None if jwt_config.key_env else jwt_path,
        )
        table = await asyncio.get_running_loop().run_in_executor(
            None, watcher.load_initial
        )
        log.info("keystore_loaded", path=str(path), keys=len(table.records))
        app[VERIFIER_KEY] = verifier
        app[WATCHER_KEY] = watcher
        task = asyncio.create_task(watcher.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await verifier.close()

    app.cleanup_ctx.append(keys_ctx)


def _upstream(config: Config) -> Upstream:
    origin = URL(config.upstream.url)
    host = config.upstream.host_header or origin.host_port_subcomponent or ""
    return Upstream(
        origin=origin,
        host_header=host,
        trusted_proxies=TrustedProxies(parse_networks(config.server.trusted_proxies)),
        max_body_size=config.server.max_body_size,
        response_timeout=config.upstream.response_timeout,
        idle_timeout=config.upstream.idle_timeout,
        body_idle_timeout=config.limits.body_idle_timeout,
        # sock_read bounds the wait for headers; _relay switches it to idle_timeout.
        client_timeout=aiohttp.ClientTimeout(
            total=None, sock_read=config.upstream.response_timeout
        ),
        include_usage=config.audit.openai_include_usage,
    )


async def _audit_ctx(app: web.Application) -> AsyncIterator[None]:
    writer = AuditWriter(app[CONFIG_KEY].audit)
    # Runs before the server accepts requests, so blocking here is harmless.
    writer.open()
    log.info("audit_opened", path=str(writer.path), seq=writer.state.seq)
    app[AUDIT_KEY] = writer
    try:
        yield
    finally:
        writer.close()


async def _client_session_ctx(app: web.Application) -> AsyncIterator[None]:
    upstream = app[CONFIG_KEY].upstream
    connector = aiohttp.TCPConnector(
        limit=upstream.max_connections, enable_cleanup_closed=True
    )
    async with aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        timeout=aiohttp.ClientTimeout(
            total=None, connect=upstream.connect_timeout, sock_read=None
        ),
    ) as session:
        app[CLIENT_SESSION_KEY] = session
        yield


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


def setup_metrics(app: web.Application, config: Config) -> None:
    """Create the metrics registry; its live values are read at scrape time."""
    metrics = Metrics(config.metrics)
    app[METRICS_KEY] = metrics

    def audit_counts() -> tuple[int, int] | None:
        writer = app.get(AUDIT_KEY)
        return (writer.errors, writer.dropped) if writer else None

    def verify_stats() -> VerifyStats | None:
        verifier = app.get(VERIFIER_KEY)
        return verifier.stats if verifier else None

    metrics.watch(verify_stats, lambda: len(app[STREAMS_KEY]), audit_counts)


async def metrics_handler(request: web.Request) -> web.Response:
    """GET /metrics on the proxy port: with ``metrics.public`` and an admin key."""
    principal = request[PRINCIPAL_KEY]
    if "admin" not in principal.scopes:
        return json_error(request, 403, "this key lacks the 'admin' scope")
    return metrics_response(request.app[METRICS_KEY])


def metrics_response(metrics: Metrics) -> web.Response:
    """Return the Prometheus exposition as a response."""
    return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})
