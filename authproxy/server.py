"""``authproxy serve``: bootstrap the key store, run the app, handle signals."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import IO

import structlog
from aiohttp import web

from authproxy import logs
from authproxy.admin import create_admin_app
from authproxy.app import create_app, server_kwargs
from authproxy.config import Config
from authproxy.httpserver import GuardedAppRunner
from authproxy.keyadmin import CreatedKey, KeySpec, create_key
from authproxy.keystore import make_hasher
from authproxy.logs import AccessLogger
from authproxy.state import AUDIT_KEY, WATCHER_KEY
from authproxy.times import utc_now

log = structlog.stdlib.get_logger(__name__)

FIRST_KEY_NAME = "default"


async def _start_admin(app: web.Application, config: Config) -> web.AppRunner | None:
    """Start the admin API on its own listener (``admin.listen``; empty = off)."""
    if not config.admin.listen:
        return None
    host, _, port = config.admin.listen.rpartition(":")
    runner = GuardedAppRunner(
        create_admin_app(app),
        header_timeout=config.limits.header_timeout,
        access_log_class=AccessLogger,
    )
    await runner.setup()
    await web.TCPSite(runner, host.strip("[]"), int(port)).start()
    return runner


async def _reload_all(app: web.Application) -> None:
    watcher = app[WATCHER_KEY]
    await watcher.reload(force=True)
    await watcher.reload_signing(force=True)


def bootstrap_keys(config: Config, out: IO[str]) -> CreatedKey | None:
    """Create the store with a first key if it does not exist; print the token once.

    Raises:
        KeyStoreError: the store cannot be created.
    """
    path = Path(config.keys.file)
    if path.exists():
        return None
    created = create_key(
        path,
        make_hasher(config.keys.argon2),
        KeySpec(name=FIRST_KEY_NAME),
        now=utc_now(),
    )
    print(
        f"authproxy: created key store {path} with key {FIRST_KEY_NAME!r} "
        f"(id {created.record.id}). Its token is shown only now:\n"
        f"{created.token}",
        file=out,
        flush=True,
    )
    return created


def serve(config: Config) -> int:
    """Run the proxy until SIGTERM or SIGINT; return the exit code.

    Raises:
        KeyStoreError: the key store cannot be created or loaded.
    """
    logs.configure(fmt=config.log.format, level=config.log.level, cache=True)
    bootstrap_keys(config, sys.stdout)
    asyncio.run(_run(config))
    return 0


async def _run(config: Config) -> None:
    app = create_app(config)
    runner = GuardedAppRunner(
        app,
        header_timeout=config.limits.header_timeout,
        handler_cancellation=True,
        **server_kwargs(config),
    )
    await runner.setup()
    site = web.TCPSite(runner, config.listen.host, config.listen.port)
    await site.start()
    admin_runner = await _start_admin(app, config)
    addresses = [f"{a[0]}:{a[1]}" for a in runner.addresses]
    log.info(
        "server_started",
        listen=addresses,
        admin=[f"{a[0]}:{a[1]}" for a in admin_runner.addresses]
        if admin_runner
        else [],
        upstream=config.upstream.url,
        keys=config.keys.file,
    )
    stop = asyncio.Event()
    reloads: set[asyncio.Task[None]] = set()

    def reload() -> None:
        log.info("sighup_received")
        if AUDIT_KEY in app:
            app[AUDIT_KEY].reopen()
        task = loop.create_task(_reload_all(app))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await stop.wait()
        log.info("server_stopping", shutdown_timeout=config.server.shutdown_timeout)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        if admin_runner is not None:
            await admin_runner.cleanup()
        await runner.cleanup()
        log.info("server_stopped")
