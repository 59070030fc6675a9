"""Brute-force counts shared by replicas (``state.backend: redis``).

Each replica's ``FailureLimiter`` still decides on its own, at once and
without a round trip; this module adds the other replicas' failures. Every
failure a replica counts goes to Redis, where one Lua call adds it to the
client's sliding window and, when the fleet's count reaches the threshold,
blocks the client for the cool-down and announces the block on a stream.
Every replica follows the stream and blocks the client too, within
milliseconds. So ``limits.auth_failures`` holds for the fleet, not per replica.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, Final

import redis.asyncio
import structlog

from authproxy.auth.bruteforce import FailureLimiter
from authproxy.state.connection import RedisError
from authproxy.tasks import raise_if_cancelled, stop

log = structlog.stdlib.get_logger(__name__)

RETRY: Final = 0.5
BLOCK_FEED_LENGTH: Final = 10_000

# KEYS: the client's failures (sorted set), the blocks stream.
# ARGV: threshold, window (ms), cool-down (ms), a unique member, client bucket.
# Returns 1 when this failure blocked the client.
FAIL: Final = (
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', '"""
    + str(BLOCK_FEED_LENGTH)
    + """', '*',
  'client', ARGV[5], 'ms', ARGV[3])
return 1
"""
)


class SharedFailures:
    """Send this replica's failures to Redis; apply the fleet's blocks here."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str,
        limiter: FailureLimiter,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.limiter = limiter
        self._fail = client.register_script(FAIL)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        limiter.on_failure = self.note

    @property
    def _blocks(self) -> str:
        return f"{self.prefix}auth:blocks"

    def note(self, bucket: str) -> None:
        """Queue one failure for Redis (from any thread; never blocks)."""
        self._loop.call_soon_threadsafe(self._queue.put_nowait, bucket)

    async def run(self) -> None:
        """Send failures and follow blocks until cancelled."""
        sender = asyncio.create_task(self._send())
        try:
            await self._follow()
        finally:
            await stop([sender])

    async def _send(self) -> None:
        limiter = self.limiter
        args: list[Any] = [
            limiter.threshold,
            round(limiter.window * 1000),
            round(limiter.cooldown * 1000),
        ]
        while True:
            raise_if_cancelled()
            bucket = await self._queue.get()
            keys = [f"{self.prefix}auth:failures:{bucket}", self._blocks]
            try:
                await self._fail(keys=keys, args=[*args, secrets.token_hex(8), bucket])
            except (RedisError, OSError):
                # This replica's own count still blocks; only the sum is lost.
                log.warning("shared_failure_not_counted", client=bucket)

    async def _follow(self) -> None:
        last = "$"
        while True:
            raise_if_cancelled()
            try:
                reply: Any = await self.client.xread(
                    {self._blocks: last}, count=100, block=1000
                )
            except (RedisError, OSError):
                await asyncio.sleep(RETRY)
                continue
            for entry_id, fields in reply[0][1] if reply else []:
                last = entry_id
                self.limiter.block(fields["client"], int(fields["ms"]) / 1000)
                log.warning("client_blocked", client=fields["client"], fleet=True)
