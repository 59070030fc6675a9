"""Admin API authentication, the admin trail of API actions, and idempotent retries."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import structlog
from aiohttp import web

from authproxy.admin.denials import DenialTrail
from authproxy.auth.credentials import CredentialError, parse_credentials
from authproxy.auth.middleware import too_many_failures
from authproxy.auth.principal import GuessRefusedError, Principal, VerifyFailedError
from authproxy.errors import VerifyBusyError
from authproxy.keys.record import KeyRecord
from authproxy.metering.trail import record_action
from authproxy.responses import Handler, json_error
from authproxy.web.appkeys import (
    BRUTE_FORCE_KEY,
    CONFIG_KEY,
    REQUEST_ID_KEY,
    VERIFIER_KEY,
)

log = structlog.stdlib.get_logger(__name__)

MAIN_APP_KEY: Final = web.AppKey("main_app", web.Application)
ACTOR_KEY: Final = web.RequestKey("admin_actor", str)
DENIALS_KEY: Final = web.AppKey("admin_denials", DenialTrail)
PUBLIC: Final = frozenset({"openapi", "metrics"})
CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="authproxy-admin"'}
MAX_IDEMPOTENT: Final = 1000
MAX_IDEMPOTENCY_KEY: Final = 200  # as the OpenAPI document says


@web.middleware
async def admin_auth_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Require a key with the ``admin`` scope, or an admin JWT.

    The proxy's brute-force limiter applies here too (one per process, so
    guesses on either listener count together).
    """
    if request.match_info.route.name in PUBLIC:
        return await handler(request)
    principal = await _authenticate(request)
    if isinstance(principal, web.Response):
        return principal
    actor = (
        principal.key_name if principal.scheme != "jwt" else f"jwt:{principal.key_name}"
    )
    if "admin" not in principal.scopes:
        await _denied(request, "no_admin_scope", actor)
        return json_error(request, 403, "this key lacks the 'admin' scope")
    request[ACTOR_KEY] = actor
    structlog.contextvars.bind_contextvars(actor=actor)
    return await handler(request)


async def _authenticate(request: web.Request) -> Principal | web.Response:
    """Verify the credential under the limiter; a response is the refusal."""
    main = request.app[MAIN_APP_KEY]
    guess = main[BRUTE_FORCE_KEY].guess(request.remote or "")
    try:
        credential = parse_credentials(request.headers)
        return await main[VERIFIER_KEY].authenticate(credential, guess)
    except GuessRefusedError:
        return await _blocked(request, guess.retry_after())
    except (CredentialError, VerifyFailedError) as err:
        wait = guess.refused()
        if wait is not None:
            return await _blocked(request, wait)
        await _denied(request, err.reason)
        return json_error(request, 401, "unauthorized", CHALLENGE)
    except VerifyBusyError:
        return json_error(request, 503, "server busy", {"Retry-After": "1"})


async def _blocked(request: web.Request, wait: int) -> web.Response:
    await _denied(request, "client_blocked")
    return too_many_failures(request, wait)


async def _denied(request: web.Request, reason: str, actor: str = "anonymous") -> None:
    await request.app[DENIALS_KEY].denied(
        client=request.remote,
        actor=actor,
        reason=reason,
        request_id=request.get(REQUEST_ID_KEY),
    )


def setup_admin_auth(app: web.Application) -> None:
    """Store the aggregated trail of failed authentications; flushed at cleanup."""
    config = app[MAIN_APP_KEY][CONFIG_KEY]
    app[DENIALS_KEY] = DenialTrail(
        Path(config.audit.admin_file), window=config.limits.auth_window
    )
    app.cleanup_ctx.append(_denials_ctx)


async def _denials_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[DENIALS_KEY].close()


async def record(
    request: web.Request, action: str, key: KeyRecord, detail: dict[str, Any]
) -> None:
    """Append a successful admin action to the admin trail."""
    await _trail(request, action, "ok", key=key, detail=detail)
    log.info("admin_action", action=action, key_id=key.id)


async def _trail(
    request: web.Request,
    action: str,
    result: str,
    *,
    key: KeyRecord | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    config = request.app[MAIN_APP_KEY][CONFIG_KEY]
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(
        None,
        lambda: record_action(
            Path(config.audit.admin_file),
            actor=request.get(ACTOR_KEY) or "anonymous",
            action=action,
            source="api",
            result=result,
            key_id=key.id if key else None,
            key_name=key.name if key else None,
            detail=detail,
            request_id=request.get(REQUEST_ID_KEY),
            client=request.remote,
        ),
    )


class IdempotencyCache:
    """Replays the reply to a retried request with the same ``Idempotency-Key``.

    Replies are held in memory only (they may carry a new token) for
    ``admin.idempotency_ttl``; a restart forgets them.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: OrderedDict[tuple[str, ...], tuple[float, str, int, bytes]] = (
            OrderedDict()
        )

    def _key(
        self, request: web.Request, action: str, ref: str
    ) -> tuple[str, ...] | None:
        given = request.headers.get("Idempotency-Key")
        if not given:
            return None
        return (request.get(ACTOR_KEY, ""), action, ref, given)

    def get(
        self, request: web.Request, action: str, ref: str, body: dict[str, Any]
    ) -> web.Response | None:
        """Return the earlier reply for this key, or ``None``.

        A reused key with a different body gets 409.
        """
        key = self._key(request, action, ref)
        if key is None:
            return None
        if len(key[-1]) > MAX_IDEMPOTENCY_KEY:
            return json_error(
                request,
                400,
                f"Idempotency-Key: at most {MAX_IDEMPOTENCY_KEY} characters",
            )
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        _, digest, status, earlier = entry
        if digest != _digest(body):
            return json_error(
                request, 409, "Idempotency-Key reused with another request"
            )
        return web.Response(
            status=status, body=earlier, content_type="application/json"
        )

    def put(
        self,
        request: web.Request,
        action: str,
        ref: str,
        body: dict[str, Any],
        response: web.Response,
    ) -> web.Response:
        """Remember ``response`` for retries; return it."""
        key = self._key(request, action, ref)
        if key is not None and isinstance(response.body, bytes):
            expires = time.monotonic() + self.ttl
            self._entries[key] = (
                expires,
                _digest(body),
                response.status,
                response.body,
            )
            while len(self._entries) > MAX_IDEMPOTENT:
                self._entries.popitem(last=False)
        return response


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
