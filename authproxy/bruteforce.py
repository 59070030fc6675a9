"""Brute-force defence: count failed authentications per client, block past a limit.

The check runs before any credential parsing or argon2 work, so a blocked
address costs almost nothing. IPv6 clients are counted per /64, the block an
attacker typically controls.
"""

from __future__ import annotations

import collections
import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


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

    def failed(self, address: str) -> bool:
        """Count one failure; return whether the client is now blocked."""
        if self.threshold <= 0:
            return False
        key = client_bucket(address)
        now = self._monotonic()
        entry = self._clients.pop(key, None) or _Client()
        self._clients[key] = entry  # most recent last, for eviction
        failures = entry.failures
        failures.append(now)
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        while len(failures) > self.threshold:
            failures.popleft()
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        if len(failures) >= self.threshold and entry.blocked_until <= now:
            entry.blocked_until = now + self.cooldown
            failures.clear()
            self.blocks += 1
            return True
        return False
