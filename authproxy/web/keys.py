"""The key store in the proxy application: the verifier and the store watcher."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from aiohttp import web

from authproxy.auth.verify import Verifier
from authproxy.config.model import Config, signing_key_file
from authproxy.keys.signing import SigningKeys, load_signing_keys
from authproxy.keys.store import KeyTable, make_hasher, update_store
from authproxy.keys.watch import KeyStoreWatcher
from authproxy.times import Clock
from authproxy.web.appkeys import METRICS_KEY, VERIFIER_KEY, WATCHER_KEY

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
            signature_window=keys.signature_window,
        )
        jwt_config, jwt_path = config.jwt, signing_key_file(config)

        def use_signing(signing: SigningKeys) -> None:
            verifier.signing_keys = signing

        watcher = KeyStoreWatcher(
            path,
            verifier.set_table,
            keys.reload_interval,
            signing=lambda: load_signing_keys(jwt_config, jwt_path),
            on_signing=use_signing,
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
