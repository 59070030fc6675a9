"""Per-key limits as admission steps: admit (rate, concurrency), reserve, settle.

``admit`` runs right after authentication and takes a ticket (a concurrency
slot and a request from the minute's bucket); ``reserve`` runs once the body
has been read and the policy passed, so the token estimate is known and a
denied request holds nothing; ``settle`` ends the ticket however the request
ended, charging what it really used. Refusals are ``Denied`` 429s.
"""

from __future__ import annotations

import structlog

from authproxy.errors import Denied
from authproxy.keys.record import KeyLimits
from authproxy.limits.quotas import KeyLimiter, Refusal, Ticket
from authproxy.metering.exchange import Exchange
from authproxy.policy.routes import RouteClass, is_metered

log = structlog.stdlib.get_logger(__name__)


def log_refusal(refusal: Refusal, ex: Exchange) -> Denied:
    """Log a refusal and return the 429 that answers it."""
    key_id = ex.principal.key_id if ex.principal else None
    log.info("request_limited", reason=refusal.reason, key_id=key_id)
    return Denied(
        429, refusal.reason, refusal.message, tuple(refusal.headers().items())
    )


def admit(limiter: KeyLimiter, limits: KeyLimits, ex: Exchange) -> Ticket | None:
    """Take a ticket for a key with limits (``None`` when it has none).

    A metered request on a key whose token quota is already used up is
    refused here, before its body is read.

    Raises:
        Denied: 429 past the rate, the concurrency or a used-up quota.
    """
    if not limits or ex.principal is None:
        return None
    ticket = limiter.admit(
        ex.principal.key_id, limits, metered=is_metered(ex.route_class)
    )
    if isinstance(ticket, Refusal):
        raise log_refusal(ticket, ex)
    return ticket


def token_estimate(ex: Exchange, default_output: int) -> int:
    """Return the tokens a metered request may use: prompt plus its output cap.

    The cap is the one the request asked for, or ``default_output`` when it
    set none; embeddings generate no output.
    """
    if ex.route_class is RouteClass.EMBEDDINGS:
        output = 0
    elif ex.max_output is not None:
        output = ex.max_output
    else:
        output = default_output
    # At least one, so even an empty request holds something while it runs.
    return max(1, ex.prompt_estimate + output)


def reserve(
    limiter: KeyLimiter, ticket: Ticket | None, ex: Exchange, default_output: int
) -> None:
    """Reserve a metered request's estimated tokens against the key's quotas.

    Only the request that crosses a quota may exceed it: one is refused when
    the key's used plus reserved tokens already reach the limit.

    Raises:
        Denied: 429 when a quota has no room left.
    """
    if ticket is None or not is_metered(ex.route_class):
        return
    refusal = limiter.reserve(ticket, token_estimate(ex, default_output))
    if refusal is not None:
        raise log_refusal(refusal, ex)


def settle(limiter: KeyLimiter, ticket: Ticket | None, ex: Exchange) -> None:
    """End a ticket: free its slot, drop its reservation, charge the real count."""
    if ticket is not None:
        prompt, completion, _ = ex.tokens()
        limiter.settle(ticket, prompt + completion)


class LocalAdmission:
    """This process's limits (``KeyLimiter``) behind the pipeline's three steps.

    The shared limits (``limits.shared``) have the same three methods, so the
    pipeline does not tell them apart.
    """

    def __init__(self, limiter: KeyLimiter) -> None:
        self.limiter = limiter

    async def admit(self, limits: KeyLimits, ex: Exchange) -> Ticket | None:
        """See ``admit``."""
        return admit(self.limiter, limits, ex)

    async def reserve(
        self, ticket: Ticket | None, ex: Exchange, default_output: int
    ) -> None:
        """See ``reserve``."""
        reserve(self.limiter, ticket, ex, default_output)

    def settle(self, ticket: Ticket | None, ex: Exchange) -> None:
        """See ``settle``."""
        settle(self.limiter, ticket, ex)
