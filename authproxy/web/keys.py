"""The key store in the proxy application: the verifier and the store watcher.

With ``state.backend: redis`` the watcher is the Redis change feed
(``keys.feed``), and the verifier refuses credentials while the feed is stale.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import structlog
from aiohttp import web

from authproxy.auth.verify import Verifier
from authproxy.config.model import Config, signing_key_file
from authproxy.keys.backend import KeyBackend, key_backend
from authproxy.keys.feed import KeyFeed
from authproxy.keys.signing import SigningKeys
from authproxy.keys.store import KeyTable, make_hasher, update_store
from authproxy.keys.watch import KeyStoreWatcher
from authproxy.state.connection import StateNames, async_client
from authproxy.tasks import stop
from authproxy.times import Clock
from authproxy.web.appkeys import (
    KEY_BACKEND_KEY,
    METRICS_KEY,
    VERIFIER_KEY,
    WATCHER_KEY,
)

log = structlog.stdlib.get_logger(__name__)


def usable_cpus() -> int:
    """Return how many CPUs this process may run on (a container's cpuset, taskset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def setup_keys(app: web.Application, config: Config, clock: Clock) -> None:
    """Create the verifier and the store watcher, started in ``cleanup_ctx``."""
    keys = config.keys
    workers = keys.verify_workers or usable_cpus()
    backend = key_backend(config)
    app[KEY_BACKEND_KEY] = backend

    def persist_hash(key_id: str, old_hash: str, new_hash: str) -> None:
        def change(table: KeyTable) -> tuple[KeyTable, None]:
            record = table.by_id.get(key_id)
            if record is None or record.hash != old_hash:
                return table, None
            return table.replace(dataclasses.replace(record, hash=new_hash)), None

        update_store(backend.store, change)

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
            signature_window=keys.signature_window,
        )
        app[VERIFIER_KEY] = verifier
        watcher: KeyStoreWatcher | KeyFeed
        if backend.redis is None:
            watcher = await _file_watcher(config, backend, verifier)
        else:
            watcher = await _redis_feed(config, backend, verifier)
        app[WATCHER_KEY] = watcher
        task = asyncio.create_task(watcher.run())
        try:
            yield
        finally:
            await stop([task])
            await verifier.close()
            if isinstance(watcher, KeyFeed):
                await watcher.client.aclose()
            if backend.redis is not None:
                backend.redis.client.close()

    app.cleanup_ctx.append(keys_ctx)


def _use_signing(verifier: Verifier) -> Callable[[SigningKeys], None]:
    def use(signing: SigningKeys) -> None:
        verifier.signing_keys = signing

    return use


async def _file_watcher(
    config: Config, backend: KeyBackend, verifier: Verifier
) -> KeyStoreWatcher:
    """Load the key file and watch it (the file backend)."""
    path = Path(config.keys.file)
    watcher = KeyStoreWatcher(
        path,
        verifier.set_table,
        config.keys.reload_interval,
        signing=backend.load_signing,
        on_signing=_use_signing(verifier),
        signing_path=None if config.jwt.key_env else signing_key_file(config),
    )
    table = await asyncio.get_running_loop().run_in_executor(None, watcher.load_initial)
    log.info("keystore_loaded", path=str(path), keys=len(table.records))
    return watcher


async def _redis_feed(
    config: Config, backend: KeyBackend, verifier: Verifier
) -> KeyFeed:
    """Load the table from Redis and follow its change feed (the redis backend)."""
    state = config.state
    feed = KeyFeed(
        async_client(state),
        StateNames(state.prefix),
        verifier.set_table,
        stale_after=state.stale_after,
        signing=backend.load_signing,
        on_signing=_use_signing(verifier),
    )
    verifier.available = feed.fresh
    table = await feed.load_initial()
    log.info(
        "keystore_loaded", backend="redis", keys=len(table.records), error=feed.state()
    )
    return feed
