"""The auth middleware: every proxied request must present a valid key."""

from __future__ import annotations

from typing import Final

import structlog
from aiohttp import web

from authproxy.bruteforce import FailureLimiter
from authproxy.credentials import CredentialError, parse_credentials
from authproxy.errors import VerifyBusyError
from authproxy.exchange import client_of
from authproxy.health import PUBLIC_ROUTES
from authproxy.principal import VerifyFailedError
from authproxy.ratelimit import key_limits_middleware
from authproxy.responses import Handler, json_error
from authproxy.state import (
    BRUTE_FORCE_KEY,
    EXCHANGE_KEY,
    PRINCIPAL_KEY,
    VERIFIER_KEY,
)

log = structlog.stdlib.get_logger(__name__)

CHALLENGES: Final = (
    ("WWW-Authenticate", 'Basic realm="authproxy", charset="UTF-8"'),
    ("WWW-Authenticate", 'Bearer realm="authproxy"'),
)
BUSY_RETRY_AFTER: Final = "1"


def unauthorized(request: web.Request) -> web.Response:
    """Return the one 401 every authentication failure gets."""
    return json_error(request, 401, "unauthorized", list(CHALLENGES))


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate the request or answer 401; public routes pass through."""
    if request.match_info.route.name in PUBLIC_ROUTES:
        return await handler(request)
    verifier = request.app[VERIFIER_KEY]
    ex = request[EXCHANGE_KEY]
    failures = request.app[BRUTE_FORCE_KEY]
    client = ex.client = client_of(request)
    wait = failures.retry_after(client)
    if wait is not None:
        # Decided before parsing or hashing anything: a blocked client is cheap.
        ex.deny("client_blocked")
        return json_error(
            request,
            429,
            "too many failed authentications; retry later",
            {"Retry-After": str(wait)},
        )
    try:
        credential = parse_credentials(request.headers)
        ex.scheme = credential.scheme
        principal = await verifier.authenticate(credential)
    except CredentialError as err:
        log.info("auth_failed", reason=err.reason)
        ex.deny(err.reason)
        _count_failure(failures, client)
        return unauthorized(request)
    except VerifyFailedError as err:
        log.info(
            "auth_failed",
            reason=err.reason,
            key_id=err.key_id,
            scheme=credential.scheme,
        )
        ex.deny(err.reason, err.key_id)
        _count_failure(failures, client)
        return unauthorized(request)
    except VerifyBusyError:
        log.warning("auth_busy", pending=verifier.pending)
        ex.deny("verify_busy")
        return json_error(
            request, 503, "server busy", {"Retry-After": BUSY_RETRY_AFTER}
        )
    request[PRINCIPAL_KEY] = principal
    structlog.contextvars.bind_contextvars(key_id=principal.key_id)
    return await handler(request)


def _count_failure(failures: FailureLimiter, client: str) -> None:
    if failures.failed(client):
        log.warning("client_blocked", client=client, cooldown=failures.cooldown)


def setup_auth(app: web.Application) -> None:
    """Append the auth and per-key limits middlewares (after the error middleware)."""
    app.middlewares.append(auth_middleware)
    app.middlewares.append(key_limits_middleware)
