"""Brute-force defence: count failed authentications per client, block past a limit.

A client's failures in the window plus its argon2 checks still in flight stay
below the threshold, so a burst of concurrent guesses runs at most
``threshold`` checks before the block. A blocked client is refused before any
argon2 work. IPv6 clients are counted per /64, the block an attacker
typically controls.
"""

from __future__ import annotations

import collections
import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

log = structlog.stdlib.get_logger(__name__)


def client_bucket(address: str) -> str:
    """Return the counting key for an address: itself, or its IPv6 /64."""
    if ":" not in address:
        return address  # IPv4 (or a name): counted as is, without parsing
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass(slots=True)
class _Client:
    failures: collections.deque[float] = field(default_factory=collections.deque)
    blocked_until: float = 0.0
    pending: int = 0  # argon2 checks admitted and not yet settled


class FailureLimiter:
    """Sliding-window failure counts per client, with a cool-down once exceeded."""

    def __init__(
        self,
        *,
        threshold: int,
        window: float,
        cooldown: float,
        max_clients: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.window = window
        self.cooldown = cooldown
        self.max_clients = max_clients
        self.blocks = 0
        # Told of every counted failure (the Redis backend shares them: auth.fleet).
        self.on_failure: Callable[[str], None] | None = None
        self._monotonic = monotonic
        self._clients: collections.OrderedDict[str, _Client] = collections.OrderedDict()

    def retry_after(self, address: str) -> int | None:
        """Return the seconds a blocked client must wait, or ``None``."""
        if self.threshold <= 0 or not self._clients:
            return None
        entry = self._clients.get(client_bucket(address))
        if entry is None:
            return None
        remaining = entry.blocked_until - self._monotonic()
        return max(1, math.ceil(remaining)) if remaining > 0 else None

    def in_flight(self, address: str) -> int:
        """Return how many of a client's argon2 checks are running or queued."""
        entry = self._clients.get(client_bucket(address))
        return entry.pending if entry is not None else 0

    def admit(self, address: str) -> bool:
        """Reserve one argon2 check for a client; refuse if blocked or at its limit.

        Every ``True`` must be followed by exactly one :meth:`release`.
        """
        if self.threshold <= 0:
            return True
        now = self._monotonic()
        entry = self._track(client_bucket(address))
        if entry.blocked_until > now:
            return False
        self._slide(entry, now)
        if len(entry.failures) + entry.pending >= self.threshold:
            return False
        entry.pending += 1
        return True

    def release(self, address: str, *, failed: bool) -> bool:
        """Settle a check :meth:`admit` reserved; return whether it blocked."""
        if self.threshold <= 0:
            return False
        key = client_bucket(address)
        entry = self._clients.get(key)
        # An entry evicted meanwhile (past max_clients) has lost its count.
        if entry is not None and entry.pending > 0:
            entry.pending -= 1
        if failed:
            return self.failed(address)
        if entry is not None and not (
            entry.pending or entry.failures or entry.blocked_until
        ):
            del self._clients[key]  # a client that only succeeds costs no memory
        return False

    def failed(self, address: str) -> bool:
        """Count one failure; return whether the client is now blocked."""
        if self.threshold <= 0:
            return False
        now = self._monotonic()
        bucket = client_bucket(address)
        entry = self._track(bucket)
        if self.on_failure is not None:
            self.on_failure(bucket)
        failures = entry.failures
        failures.append(now)
        self._slide(entry, now)
        while len(failures) > self.threshold:
            failures.popleft()
        if len(failures) >= self.threshold and entry.blocked_until <= now:
            entry.blocked_until = now + self.cooldown
            failures.clear()
            self.blocks += 1
            return True
        return False

    def block(self, bucket: str, seconds: float) -> None:
        """Block a client bucket for ``seconds`` (a block another replica decided)."""
        if self.threshold <= 0 or seconds <= 0:
            return
        entry = self._track(bucket)
        until = self._monotonic() + seconds
        if until > entry.blocked_until:
            entry.blocked_until = until
            entry.failures.clear()

    def guess(self, address: str) -> Guess:
        """Return the gate for one request's authentication from ``address``."""
        return Guess(self, address)

    def _track(self, key: str) -> _Client:
        entry = self._clients.pop(key, None) or _Client()
        self._clients[key] = entry  # most recent last, for eviction
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        return entry

    def _slide(self, entry: _Client, now: float) -> None:
        failures = entry.failures
        while failures and failures[0] <= now - self.window:
            failures.popleft()


class Guess:
    """One request's authentication from one client: the verifier's gate.

    The argon2 check it admits is counted when the check ends, even if the
    request was cancelled meanwhile; any other failure is counted by
    :meth:`refused`.
    """

    __slots__ = ("_limiter", "client", "entered")

    def __init__(self, limiter: FailureLimiter, client: str) -> None:
        self._limiter = limiter
        self.client = client
        self.entered = False

    def enter(self) -> bool:
        """Reserve an argon2 check for this client; ``False`` means refuse (429)."""
        self.entered = self._limiter.admit(self.client)
        return self.entered

    def settle(self, *, failed: bool) -> None:
        """Release the check, counting it if it failed."""
        if self._limiter.release(self.client, failed=failed):
            self._blocked()

    def refused(self) -> int | None:
        """Account for a failed authentication; return ``Retry-After`` if it is a 429.

        A blocked client's failure is not counted and gets the 429 (the
        failure that starts a block still gets its 401).
        """
        if self.entered:
            return None  # counted when its check settled
        wait = self._limiter.retry_after(self.client)
        if wait is not None:
            return wait
        if self._limiter.failed(self.client):
            self._blocked()
        return None

    def retry_after(self) -> int:
        """Return the ``Retry-After`` for a refused check (1 s if not blocked yet)."""
        return self._limiter.retry_after(self.client) or 1

    def _blocked(self) -> None:
        log.warning(
            "client_blocked", client=self.client, cooldown=self._limiter.cooldown
        )
