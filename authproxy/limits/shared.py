"""Per-key limits counted in Redis, exact across every replica that shares it.

One Lua call admits a request: it takes a request from the key's per-minute
bucket, a concurrency lease and, for a metered request, a reservation of its
estimated tokens against the day's and month's quotas, or refuses and changes
nothing. A second call settles it: frees the lease, drops the reservation and
charges the real count. A metered request is admitted once its body has been
read (the estimate is known then); any other right after authentication.

Leases expire after ``state.lease_ttl`` unless their replica renews them, so
the slots of a replica killed with ``kill -9`` come free on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Final

import redis.asyncio
import structlog

from authproxy.errors import Denied
from authproxy.keys.record import KeyLimits
from authproxy.limits.admission import log_refusal, token_estimate
from authproxy.limits.quotas import (
    Refusal,
    Ticket,
    seconds_to_next_day,
    seconds_to_next_month,
)
from authproxy.limits.scripts import ADMIT, RENEW, SETTLE
from authproxy.metering.exchange import Exchange
from authproxy.policy.routes import is_metered
from authproxy.state.connection import RedisError
from authproxy.tasks import raise_if_cancelled
from authproxy.times import Clock

log = structlog.stdlib.get_logger(__name__)

DAY_TTL: Final = 2 * 86400
MONTH_TTL: Final = 32 * 86400
UNAVAILABLE: Final = "limits unavailable"


@dataclass(slots=True)
class SharedTicket(Ticket):
    """A request's hold in Redis: its lease, once admitted."""

    lease: str = field(default_factory=lambda: secrets.token_hex(8))
    metered: bool = False
    admitted: bool = False


def _unavailable() -> Denied:
    return Denied(503, "limits_unavailable", UNAVAILABLE, (("Retry-After", "1"),))


class SharedAdmission:
    """Admit, reserve and settle against counters in Redis."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str,
        clock: Clock,
        *,
        lease_ttl: float,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.lease_ttl = lease_ttl
        self._clock = clock
        self._admit = client.register_script(ADMIT)
        self._settle = client.register_script(SETTLE)
        self._renew = client.register_script(RENEW)
        self._open: dict[str, SharedTicket] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _keys(self, key_id: str) -> list[str]:
        day, month = self._periods()
        base = f"{self.prefix}limits:{key_id}:"
        return [
            base + "rpm",
            base + "leases",
            base + "reserved",
            f"{base}day:{day}",
            f"{base}month:{month}",
        ]

    def _periods(self) -> tuple[str, str]:
        now = self._clock().astimezone(UTC)
        return now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")

    async def admit(self, limits: KeyLimits, ex: Exchange) -> Ticket | None:
        """Admit a request that is not metered now; a metered one at ``reserve``.

        Raises:
            Denied: 429 past a limit; 503 when Redis cannot be reached.
        """
        if not limits or ex.principal is None:
            return None
        ticket = SharedTicket(ex.principal.key_id, limits)
        if is_metered(ex.route_class):
            ticket.metered = True
            return ticket
        await self._take(ticket, ex, 0)
        return ticket

    async def reserve(
        self, ticket: Ticket | None, ex: Exchange, default_output: int
    ) -> None:
        """Admit a metered request with its estimated tokens, in one call.

        Raises:
            Denied: 429 past a limit; 503 when Redis cannot be reached.
        """
        if not isinstance(ticket, SharedTicket) or ticket.admitted:
            return
        tokens = token_estimate(ex, default_output)
        await self._take(ticket, ex, tokens)
        ticket.reserved = tokens

    async def _take(self, ticket: SharedTicket, ex: Exchange, tokens: int) -> None:
        limits = ticket.limits
        args: list[Any] = [
            _or_none(limits.requests_per_minute),
            _or_none(limits.concurrent),
            _or_none(limits.tokens_per_day),
            _or_none(limits.tokens_per_month),
            tokens,
            ticket.lease,
            round(self.lease_ttl * 1000),
            "1" if ticket.metered else "0",
        ]
        try:
            reply = await self._admit(keys=self._keys(ticket.key_id), args=args)
        except (RedisError, OSError):
            log.error("limits_unavailable", key_id=ticket.key_id)
            raise _unavailable() from None
        if reply[0] != "ok":
            raise log_refusal(self._refusal(reply), ex)
        ticket.admitted = True
        self._open[ticket.lease] = ticket

    def _refusal(self, reply: list[Any]) -> Refusal:
        reason, wait, limit, remaining, reset = reply
        if reason.startswith("token_quota_"):
            period = reason.removeprefix("token_quota_")
            now = self._clock()
            until = seconds_to_next_day if period == "day" else seconds_to_next_month
            wait = reset = until(now)
            message = f"token quota of {limit} per {period} used up"
        elif reason == "rate_limit":
            message = f"rate limit of {limit} requests per minute exceeded"
        else:
            message = "too many concurrent requests for this key"
        return Refusal(
            reason, message, int(wait), int(limit), int(remaining), int(reset)
        )

    def settle(self, ticket: Ticket | None, ex: Exchange) -> None:
        """End a request: settle it in Redis in the background (never cancelled)."""
        if not isinstance(ticket, SharedTicket) or not ticket.admitted:
            return
        ticket.admitted = False
        self._open.pop(ticket.lease, None)
        prompt, completion, _ = ex.tokens()
        task = asyncio.create_task(self._settle_now(ticket, prompt + completion))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle_now(self, ticket: SharedTicket, tokens: int) -> None:
        keys = self._keys(ticket.key_id)
        try:
            await self._settle(
                keys=[keys[1], keys[2], keys[3], keys[4]],
                args=[ticket.lease, max(0, tokens), DAY_TTL, MONTH_TTL],
            )
        except (RedisError, OSError):
            # The lease expires by itself; the tokens are lost to the quota.
            log.error("limits_settle_failed", key_id=ticket.key_id, tokens=tokens)

    async def run(self) -> None:
        """Renew the leases of running requests every third of their lifetime."""
        while True:
            raise_if_cancelled()
            await asyncio.sleep(self.lease_ttl / 3)
            tickets = list(self._open.values())
            if not tickets:
                continue
            keys = [self._keys(t.key_id)[1] for t in tickets]
            args: list[str | int] = [round(self.lease_ttl * 1000)]
            args += [t.lease for t in tickets]
            with contextlib.suppress(RedisError, OSError):
                await self._renew(keys=keys, args=args)

    async def close(self) -> None:
        """Wait for settlements still on their way, then close the client."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.aclose()


def _or_none(limit: int | None) -> int:
    return -1 if limit is None else limit


__all__ = ["SharedAdmission", "SharedTicket"]
