"""The auth middleware: every proxied request must present a valid key."""

from __future__ import annotations

from typing import Final

import structlog
from aiohttp import web

from authproxy.auth.credentials import CredentialError, parse_credentials
from authproxy.auth.principal import GuessRefusedError, VerifyFailedError
from authproxy.errors import VerifyBusyError
from authproxy.limits.middleware import key_limits_middleware
from authproxy.metering.exchange import client_of
from authproxy.responses import Handler, json_error
from authproxy.web.appkeys import (
    BRUTE_FORCE_KEY,
    EXCHANGE_KEY,
    PRINCIPAL_KEY,
    VERIFIER_KEY,
)
from authproxy.web.health import PUBLIC_ROUTES

log = structlog.stdlib.get_logger(__name__)

CHALLENGES: Final = (
    ("WWW-Authenticate", 'Basic realm="authproxy", charset="UTF-8"'),
    ("WWW-Authenticate", 'Bearer realm="authproxy"'),
)
BUSY_RETRY_AFTER: Final = "1"


def unauthorized(request: web.Request) -> web.Response:
    """Return the one 401 every authentication failure gets."""
    return json_error(request, 401, "unauthorized", list(CHALLENGES))


def too_many_failures(request: web.Request, wait: int) -> web.Response:
    """Return the 429 of a client the brute-force limiter refuses."""
    return json_error(
        request,
        429,
        "too many failed authentications; retry later",
        {"Retry-After": str(wait)},
    )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate the request or answer 401; public routes pass through.

    A blocked client still passes with a credential that needs no argon2
    work (cached, or a JWT): a correct credential proves itself. Anything
    else from it gets 429 without argon2 work.
    """
    if request.match_info.route.name in PUBLIC_ROUTES:
        return await handler(request)
    verifier = request.app[VERIFIER_KEY]
    ex = request[EXCHANGE_KEY]
    client = ex.client = client_of(request)
    guess = request.app[BRUTE_FORCE_KEY].guess(client)
    scheme = None
    try:
        credential = parse_credentials(request.headers)
        scheme = ex.scheme = credential.scheme
        principal = await verifier.authenticate(credential, guess)
    except GuessRefusedError:
        ex.deny("client_blocked")
        return too_many_failures(request, guess.retry_after())
    except (CredentialError, VerifyFailedError) as err:
        key_id = err.key_id if isinstance(err, VerifyFailedError) else None
        wait = guess.refused()
        if wait is not None:
            ex.deny("client_blocked", key_id)
            return too_many_failures(request, wait)
        log.info("auth_failed", reason=err.reason, key_id=key_id, scheme=scheme)
        ex.deny(err.reason, key_id)
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


def setup_auth(app: web.Application) -> None:
    """Append the auth and per-key limits middlewares (after the error middleware)."""
    app.middlewares.append(auth_middleware)
    app.middlewares.append(key_limits_middleware)
