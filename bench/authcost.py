"""Auth cost: first (argon2) vs cached verification, and a bogus-credential flood."""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import Callable
from typing import Any

from bench import bodies
from bench.authproxy import Key
from bench.httpclient import HttpConnection, build_request
from bench.procs import HOST, Proc
from bench.stats import summary

_B32 = "abcdefghijklmnopqrstuvwxyz234567"


def _chat(port: int, headers: dict[str, str]) -> bytes:
    return build_request(
        "POST",
        bodies.CHAT_PATH,
        f"{HOST}:{port}",
        body=bodies.CHAT_REQUEST,
        headers=headers,
    )


async def cold_vs_warm(
    port: int, keys: list[Key], proxy: Proc, *, warm_per_key: int
) -> dict[str, Any]:
    """Time each key's first request (argon2) and its next ones (cache hits).

    The proxy's CPU time (all threads, from /proc) is read around each group,
    which shows the argon2 work directly: a cached request costing a small
    fraction of one verification cannot contain one.
    """
    cold: list[float] = []
    warm: list[float] = []
    cpu_cold = cpu_warm = 0.0
    bad = 0
    for key in keys:
        raw = _chat(port, key.bearer)
        conn = await HttpConnection.open(HOST, port)
        before = proxy.cpu_seconds()
        reply = await conn.request(raw)
        middle = proxy.cpu_seconds()
        bad += reply.status != 200
        cold.append(reply.latency_ms)
        for _ in range(warm_per_key):
            reply = await conn.request(raw)
            bad += reply.status != 200
            warm.append(reply.latency_ms)
        after = proxy.cpu_seconds()
        conn.close()
        cpu_cold += middle - before
        cpu_warm += after - middle
    cold_cpu_ms = cpu_cold * 1000 / len(keys)
    warm_cpu_ms = cpu_warm * 1000 / max(1, len(warm))
    return {
        "keys": len(keys),
        "warm_requests": len(warm),
        "non_200": bad,
        "cold_ms": summary(cold),
        "warm_ms": summary(warm),
        "cold_cpu_ms_per_request": round(cold_cpu_ms, 2),
        "warm_cpu_ms_per_request": round(warm_cpu_ms, 3),
        # Upper bound: even if all warm CPU were argon2, this many verifications.
        "argon2_per_warm_request_max": round(warm_cpu_ms / cold_cpu_ms, 4)
        if cold_cpu_ms
        else None,
    }


class _Paced:
    """Open-loop sender: one request every ``1/rate`` s, on a pool of connections.

    Latency counts from the scheduled send time, so a stalled proxy is not
    hidden by the sender waiting for it (no coordinated omission).
    """

    def __init__(
        self, port: int, make: Callable[[int], bytes], rate: float, max_conns: int
    ) -> None:
        self.port = port
        self.make = make
        self.rate = rate
        self.max_conns = max_conns
        self.free: list[HttpConnection] = []
        self.open = 0
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.skipped = 0
        self.tasks: set[asyncio.Task[None]] = set()

    def _count(self, key: str) -> None:
        self.statuses[key] = self.statuses.get(key, 0) + 1

    async def _send(self, n: int, scheduled: float) -> None:
        conn = self.free.pop() if self.free else None
        try:
            if conn is None:
                self.open += 1
                conn = await HttpConnection.open(HOST, self.port)
            reply = await conn.request(self.make(n))
        except (OSError, ConnectionError) as err:
            self._count(type(err).__name__)
            self.open -= 1
            return
        self.latencies.append((reply.done_ns / 1e9 - scheduled) * 1000)
        self._count(str(reply.status))
        if conn.usable:
            self.free.append(conn)
        else:
            self.open -= 1

    async def run(self, duration: float) -> None:
        start = time.monotonic()
        total = int(duration * self.rate)
        for n in range(total):
            scheduled = start + n / self.rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self.free and self.open >= self.max_conns:
                self.skipped += 1
                continue
            task = asyncio.create_task(self._send(n, scheduled))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=30)
        for conn in self.free:
            conn.close()

    def result(self, duration: float) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "sent": len(self.latencies),
            "achieved_rate": round(len(self.latencies) / duration, 1),
            "statuses": dict(sorted(self.statuses.items())),
            "skipped_pool_full": self.skipped,
            "latency_ms": summary(self.latencies),
        }


def unknown_id_token(_: int) -> str:
    """A well-formed token whose key id exists nowhere (rejected without argon2)."""
    key_id = "".join(secrets.choice(_B32) for _ in range(12))
    return f"Bearer ap_{key_id}_{secrets.token_urlsafe(32)}"


async def flood(
    port: int,
    valid: Key,
    bogus_authorization: Callable[[int], str],
    *,
    bogus_rate: float,
    probe_rate: float,
    duration: float,
) -> dict[str, Any]:
    """Send ``bogus_rate`` req/s of bad credentials and probe with a valid key.

    ``bogus_authorization(n)`` gives the n-th bogus ``Authorization`` value.

    Each bogus request claims its own client address (X-Forwarded-For, which
    the proxy trusts from 127.0.0.1): a botnet, so the per-address brute-force
    block never kicks in and every bogus credential must be checked. The valid
    probe comes from one other address.
    """
    valid_raw = _chat(port, {**valid.bearer, "X-Forwarded-For": "192.0.2.10"})
    probe = _Paced(port, lambda _: valid_raw, probe_rate, max_conns=64)
    bogus = _Paced(
        port,
        lambda n: _chat(
            port,
            {
                "Authorization": bogus_authorization(n),
                "X-Forwarded-For": f"198.18.{n // 250 % 250}.{n % 250 + 1}",
            },
        ),
        bogus_rate,
        max_conns=512,
    )
    await asyncio.gather(probe.run(duration), bogus.run(duration))
    return {"valid": probe.result(duration), "bogus": bogus.result(duration)}


def wrong_secret_token(key: Key) -> Callable[[int], str]:
    """Tokens naming a real key id with a wrong secret (refused by fingerprint)."""
    return lambda _: f"Bearer ap_{key.id}_{secrets.token_urlsafe(32)}"


def wrong_password(key: Key) -> Callable[[int], str]:
    """Basic credentials of a real password key with wrong passwords.

    A chosen password has no fingerprint, so each one that is not refused as
    busy costs a full argon2 verification: the worst case for the event loop.
    """

    def make(_: int) -> str:
        raw = f"{key.name}:{secrets.token_urlsafe(12)}".encode()
        return f"Basic {base64.b64encode(raw).decode()}"

    return make
