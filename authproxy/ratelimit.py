"""Wiring and enforcement of the limits: per-key quotas middleware, limiter set-up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from aiohttp import web

from authproxy.audit import rotated_files
from authproxy.bruteforce import FailureLimiter
from authproxy.config import Config, limits_state_file
from authproxy.errors import KeyStoreError
from authproxy.keylimits import KeyLimiter
from authproxy.keyrecord import KeyLimits
from authproxy.report import read_records
from authproxy.responses import Handler, json_error
from authproxy.state import (
    BRUTE_FORCE_KEY,
    CONFIG_KEY,
    EXCHANGE_KEY,
    KEY_LIMITS_KEY,
    PRINCIPAL_KEY,
    VERIFIER_KEY,
)
from authproxy.times import Clock

log = structlog.stdlib.get_logger(__name__)


@web.middleware
async def key_limits_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Refuse with 429 past a key's limits; charge its tokens when it ends."""
    principal = request.get(PRINCIPAL_KEY)
    if principal is None:
        return await handler(request)
    record = request.app[VERIFIER_KEY].table.by_id.get(principal.key_id)
    limits = record.limits if record is not None else KeyLimits()
    if not limits:
        return await handler(request)
    limiter = request.app[KEY_LIMITS_KEY]
    ex = request[EXCHANGE_KEY]
    refusal = limiter.admit(principal.key_id, limits)
    if refusal is not None:
        ex.deny(refusal.reason)
        log.info("request_limited", reason=refusal.reason, key_id=principal.key_id)
        return json_error(request, 429, refusal.message, refusal.headers())
    try:
        return await handler(request)
    finally:
        prompt, completion, _ = ex.tokens()
        limiter.release(principal.key_id, prompt + completion)


def setup_limits(app: web.Application, config: Config, clock: Clock) -> None:
    """Create both limiters; per-key counters load and save in ``cleanup_ctx``."""
    limits = config.limits
    app[BRUTE_FORCE_KEY] = FailureLimiter(
        threshold=limits.auth_failures,
        window=limits.auth_window,
        cooldown=limits.auth_cooldown,
        max_clients=limits.tracked_clients,
    )
    app[KEY_LIMITS_KEY] = KeyLimiter(clock, limits_state_file(config))
    app.cleanup_ctx.append(_state_ctx)


async def _state_ctx(app: web.Application) -> AsyncIterator[None]:
    limiter = app[KEY_LIMITS_KEY]
    config = app[CONFIG_KEY]
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
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
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
