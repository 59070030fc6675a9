"""Per-key counters across restarts: load (or rebuild from the audit log), save."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import structlog

from authproxy.config.model import Config
from authproxy.errors import KeyStoreError
from authproxy.limits.quotas import KeyLimiter
from authproxy.metering.logfiles import rotated_files
from authproxy.metering.report import read_records
from authproxy.tasks import stop

log = structlog.stdlib.get_logger(__name__)


@contextlib.asynccontextmanager
async def kept_counters(limiter: KeyLimiter, config: Config) -> AsyncIterator[None]:
    """Load the counters, save them every ``limits.state_interval`` and at the end.

    Without a state file, this day's and month's tokens are recounted from the
    audit log, so a lost file does not reset anyone's quota.
    """
    loop = asyncio.get_running_loop()
    found = await loop.run_in_executor(None, limiter.load)
    if not found and config.audit.enabled and config.audit.file != "-":
        files = [p for p in rotated_files(Path(config.audit.file)) if p.exists()]
        counted = await loop.run_in_executor(
            None, lambda: limiter.rebuild(read_records(files))
        )
        log.info("limits_rebuilt_from_audit", records=counted)
    task = asyncio.create_task(_save_every(limiter, config.limits.state_interval))
    try:
        yield
    finally:
        await stop([task])
        _save(limiter)


async def _save_every(limiter: KeyLimiter, interval: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        if limiter.dirty:
            await loop.run_in_executor(None, _save, limiter)


def _save(limiter: KeyLimiter) -> None:
    try:
        limiter.save()
    except KeyStoreError as err:
        log.error("limits_state_save_failed", error=str(err))
