"""Wiring of the limits: the per-key limits middleware, token reservation, set-up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from aiohttp import web

from authproxy.auth.bruteforce import FailureLimiter
from authproxy.config.model import Config, limits_state_file
from authproxy.errors import KeyStoreError
from authproxy.keys.record import KeyLimits
from authproxy.limits.quotas import KeyLimiter, Refusal
from authproxy.metering.audit import rotated_files
from authproxy.metering.exchange import Exchange
from authproxy.metering.report import read_records
from authproxy.policy.routes import RouteClass, is_metered
from authproxy.responses import Handler, json_error
from authproxy.times import Clock
from authproxy.web.appkeys import (
    BRUTE_FORCE_KEY,
    CONFIG_KEY,
    EXCHANGE_KEY,
    KEY_LIMITS_KEY,
    LIMIT_TICKET_KEY,
    PRINCIPAL_KEY,
    VERIFIER_KEY,
)

log = structlog.stdlib.get_logger(__name__)


@web.middleware
async def key_limits_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Refuse with 429 past a key's rate or concurrency; settle its tokens at the end.

    The token reservation itself is made by the handler (``reserve_tokens``)
    once the body has been read; the ``finally`` here ends it however the
    request ends, so no reservation outlives its request.
    """
    principal = request.get(PRINCIPAL_KEY)
    if principal is None:
        return await handler(request)
    record = request.app[VERIFIER_KEY].table.by_id.get(principal.key_id)
    limits = record.limits if record is not None else KeyLimits()
    if not limits:
        return await handler(request)
    limiter = request.app[KEY_LIMITS_KEY]
    ex = request[EXCHANGE_KEY]
    ticket = limiter.admit(principal.key_id, limits, metered=is_metered(ex.route_class))
    if isinstance(ticket, Refusal):
        return _refuse(request, ex, ticket)
    request[LIMIT_TICKET_KEY] = ticket
    try:
        return await handler(request)
    finally:
        prompt, completion, _ = ex.tokens()
        limiter.settle(ticket, prompt + completion)


def reserve_tokens(request: web.Request, ex: Exchange) -> web.Response | None:
    """Reserve a metered request's estimated tokens, or answer 429 past a quota.

    Call it once the body has been read and the policy passed, so the
    estimate is known and a denied request holds nothing. The estimate is
    the prompt estimate plus the output cap the request asked for, or
    ``limits.default_output_reservation`` when it set none (embeddings
    generate no output).
    """
    ticket = request.get(LIMIT_TICKET_KEY)
    if ticket is None or not is_metered(ex.route_class):
        return None
    default = request.app[CONFIG_KEY].limits.default_output_reservation
    refusal = request.app[KEY_LIMITS_KEY].reserve(ticket, token_estimate(ex, default))
    if refusal is not None:
        return _refuse(request, ex, refusal)
    return None


def token_estimate(ex: Exchange, default_output: int) -> int:
    """Return the tokens a metered request may use: prompt plus its output cap."""
    if ex.route_class is RouteClass.EMBEDDINGS:
        output = 0
    elif ex.max_output is not None:
        output = ex.max_output
    else:
        output = default_output
    # At least one, so even an empty request holds something while it runs.
    return max(1, ex.prompt_estimate + output)


def _refuse(request: web.Request, ex: Exchange, refusal: Refusal) -> web.Response:
    ex.deny(refusal.reason)
    key_id = request[PRINCIPAL_KEY].key_id
    log.info("request_limited", reason=refusal.reason, key_id=key_id)
    return json_error(request, 429, refusal.message, refusal.headers())


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
