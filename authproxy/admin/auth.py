"""Admin authentication (API and console sign-in), and the admin trail of actions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import structlog
from aiohttp import web

from authproxy.admin.denials import DenialTrail
from authproxy.auth.admission import blocked, is_guess
from authproxy.auth.credentials import Credential, CredentialError, parse_credentials
from authproxy.auth.principal import GuessRefusedError, Principal, VerifyFailedError
from authproxy.config.model import admin_trail_file
from authproxy.errors import Denied, VerifyBusyError
from authproxy.keys.record import KeyRecord
from authproxy.metering.trail import record_action
from authproxy.responses import Handler
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
# console_root: GET / on the admin listener leads a browser to the console.
PUBLIC: Final = frozenset({"openapi", "metrics", "console_root"})
CHALLENGE: Final = (("WWW-Authenticate", 'Bearer realm="authproxy-admin"'),)


@web.middleware
async def admin_auth_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Require a key with the ``admin`` scope, or an admin JWT.

    The proxy's brute-force limiter applies here too (one per process, so
    guesses on either listener count together). Requests routed into a
    sub-application (the console) skip it: the console has its own sessions,
    and signs in through ``authenticate_admin`` under the same limiter.
    """
    if request.match_info.route.name in PUBLIC or in_subapp(request):
        return await handler(request)
    principal = await authenticate_admin(
        request, lambda: parse_credentials(request.headers)
    )
    actor = actor_of(principal)
    request[ACTOR_KEY] = actor
    structlog.contextvars.bind_contextvars(actor=actor)
    return await handler(request)


def in_subapp(request: web.Request) -> bool:
    """Tell whether the request was routed into a sub-application of this app."""
    return request.match_info.apps[-1] is not request.app


def actor_of(principal: Principal) -> str:
    """Return the actor the admin trail names: the key's name, or ``jwt:<actor>``."""
    if principal.scheme == "jwt":
        return f"jwt:{principal.key_name}"
    return principal.key_name


async def authenticate_admin(
    request: web.Request, read: Callable[[], Credential]
) -> Principal:
    """Verify an admin credential under the limiter.

    Args:
        request: the request (its peer is what the limiter counts).
        read: returns the presented credential (raising ``CredentialError``).

    Raises:
        Denied: 401, 403 (no admin scope), 429 (blocked) or 503.

    Returns:
        The principal, with the ``admin`` scope.
    """
    principal = await authenticate(request, read)
    if "admin" not in principal.scopes:
        await _denied(request, "no_admin_scope", actor_of(principal))
        raise Denied(403, "no_admin_scope", "this key lacks the 'admin' scope")
    return principal


async def authenticate(
    request: web.Request, read: Callable[[], Credential]
) -> Principal:
    """Verify the credential ``read`` returns under the limiter.

    Raises:
        Denied: 401, 429 (blocked) or 503 (verification queue full).
    """
    main = request.config_dict[MAIN_APP_KEY]
    guess = main[BRUTE_FORCE_KEY].guess(request.remote or "")
    try:
        credential = read()
        return await main[VERIFIER_KEY].authenticate(credential, guess)
    except GuessRefusedError:
        raise await _blocked(request, guess.retry_after()) from None
    except (CredentialError, VerifyFailedError) as err:
        wait = guess.refused() if is_guess(err) else None
        if wait is not None:
            raise await _blocked(request, wait) from None
        await _denied(request, err.reason)
        raise Denied(401, err.reason, "unauthorized", CHALLENGE) from None
    except VerifyBusyError:
        raise Denied(
            503, "verify_busy", "server busy", (("Retry-After", "1"),)
        ) from None


async def _blocked(request: web.Request, wait: int) -> Denied:
    await _denied(request, "client_blocked")
    return blocked(wait)


async def _denied(request: web.Request, reason: str, actor: str = "anonymous") -> None:
    await request.config_dict[DENIALS_KEY].denied(
        client=request.remote,
        actor=actor,
        reason=reason,
        request_id=request.get(REQUEST_ID_KEY),
    )


def setup_admin_auth(app: web.Application) -> None:
    """Store the aggregated trail of failed authentications; flushed at cleanup."""
    config = app[MAIN_APP_KEY][CONFIG_KEY]
    app[DENIALS_KEY] = DenialTrail(
        admin_trail_file(config),
        window=config.limits.auth_window,
        replica=config.server.replica,
    )
    app.cleanup_ctx.append(_denials_ctx)


async def _denials_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[DENIALS_KEY].close()


async def record(
    request: web.Request,
    action: str,
    key: KeyRecord | None,
    detail: dict[str, Any],
    *,
    source: str = "api",
) -> None:
    """Append a successful admin action to the admin trail (source: api, console).

    ``key`` is ``None`` for an action on no key (a console sign-in with an
    admin JWT).
    """
    await _trail(request, action, "ok", key=key, detail=detail, source=source)
    log.info("admin_action", action=action, key_id=key.id if key else None)


async def _trail(
    request: web.Request,
    action: str,
    result: str,
    *,
    key: KeyRecord | None = None,
    detail: dict[str, Any] | None = None,
    source: str = "api",
) -> None:
    config = request.config_dict[MAIN_APP_KEY][CONFIG_KEY]
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(
        None,
        lambda: record_action(
            admin_trail_file(config),
            actor=request.get(ACTOR_KEY) or "anonymous",
            action=action,
            source=source,
            result=result,
            key_id=key.id if key else None,
            key_name=key.name if key else None,
            detail=detail,
            request_id=request.get(REQUEST_ID_KEY),
            client=request.remote,
            replica=config.server.replica,
        ),
    )
