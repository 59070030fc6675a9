"""The proxy's routes as one pipeline: authenticate, admit, then forward.

Behind the edge (``web.edge``), every proxied request takes the same steps,
each a plain function that raises ``Denied``: authentication (a principal),
admission by the key's limits (a ticket, settled however the request ends),
and the handler (``proxy.handler.forward``), which checks the policy and
reserves tokens before it sends anything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from authproxy.auth.admission import AuthRefused, Target, authenticate
from authproxy.auth.principal import KEY_STATE_MESSAGES, Principal
from authproxy.errors import Denied
from authproxy.keys.record import KeyLimits
from authproxy.limits.quotas import Ticket
from authproxy.metering.exchange import Exchange
from authproxy.proxy.handler import forward
from authproxy.proxy.request import ProxyRequest
from authproxy.web.appkeys import (
    ADMISSION_KEY,
    BRUTE_FORCE_KEY,
    EXCHANGE_KEY,
    FORWARDING_KEY,
    METRICS_KEY,
    VERIFIER_KEY,
)
from authproxy.web.metrics import metrics_response


@asynccontextmanager
async def admitted(
    request: ProxyRequest,
) -> AsyncIterator[tuple[Principal, Ticket | None]]:
    """Authenticate and admit the request; settle its ticket when it ends.

    Raises:
        Denied: from authentication (401, 429, 503) or the key's limits (429).
    """
    principal, ticket = await admit_request(request)
    try:
        yield principal, ticket
    finally:
        request.app[ADMISSION_KEY].settle(ticket, request[EXCHANGE_KEY])


async def admit_request(request: ProxyRequest) -> tuple[Principal, Ticket | None]:
    """Authenticate and admit the request; the caller settles the ticket.

    Raises:
        Denied: from authentication (401, 429, 503) or the key's limits (429).
    """
    app = request.app
    ex = request[EXCHANGE_KEY]
    verifier = app[VERIFIER_KEY]
    try:
        principal = await authenticate(
            request.headers,
            ex.client,
            verifier,
            app[BRUTE_FORCE_KEY],
            Target(request.method, ex.path, request.rel_url.raw_query_string),
        )
    except AuthRefused as err:
        ex.scheme, ex.presented_key_id = err.scheme, err.key_id
        raise _explained(err) from None
    ex.principal = principal
    record = verifier.table.by_id.get(principal.key_id)
    limits = record.limits if record is not None else KeyLimits()
    return principal, await app[ADMISSION_KEY].admit(limits, ex)


def _explained(err: AuthRefused) -> AuthRefused:
    """Say in the 401 why a proved key is refused; any other refusal stays as is.

    Only ``check_usable`` reasons name a key's state, and it runs once the
    credential verified: the caller holds the key, so this is no oracle.
    """
    message = KEY_STATE_MESSAGES.get(err.reason)
    if err.status != 401 or message is None:
        return err
    return AuthRefused(
        Denied(401, err.reason, message, err.headers), err.scheme, err.key_id
    )


async def proxy_route(request: ProxyRequest) -> web.StreamResponse:
    """Every path that is not the proxy's own: forward it to Ollama."""
    app = request.app
    fwd = app[FORWARDING_KEY]
    gate = app[ADMISSION_KEY]
    ex = request[EXCHANGE_KEY]
    # admitted(), spelled out: no async generator and two awaits per request.
    principal, ticket = await admit_request(request)
    try:
        if ticket is None:  # a key without limits: nothing to reserve
            return await forward(request, ex, principal, fwd, None)

        async def reserve_tokens(ex: Exchange) -> None:
            await gate.reserve(ticket, ex, fwd.upstream.default_output)

        return await forward(request, ex, principal, fwd, reserve_tokens)
    finally:
        gate.settle(ticket, ex)


async def metrics_route(request: ProxyRequest) -> web.StreamResponse:
    """GET /metrics on the proxy port: with ``metrics.public`` and an admin key."""
    async with admitted(request) as (principal, _):
        if "admin" not in principal.scopes:
            raise Denied(403, "missing_scope:admin", "this key lacks the 'admin' scope")
        return metrics_response(request.app[METRICS_KEY])
