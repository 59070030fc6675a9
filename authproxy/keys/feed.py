"""Follow the key table in Redis: the whole table in memory, changes from a stream.

A replica loads every record once, then blocks on the change stream; each
entry names the keys that changed, which it fetches and swaps in (the
verifier drops cached verifications they invalidate). Every reply from Redis,
an entry or an empty blocking read, counts as hearing from it. A replica that
has heard nothing for ``stale_after`` is stale: ``fresh()`` is false and the
proxy refuses credentials until it catches up, so a revocation anywhere takes
effect everywhere within a bound, or the replica stops serving. It never
falls back to an old table silently.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final

import redis.asyncio
import structlog

from authproxy.errors import KeyStoreError
from authproxy.keys.redisstore import decode_record, table_from_hash
from authproxy.keys.signing import SigningKeys
from authproxy.keys.store import KeyTable
from authproxy.state.connection import RedisError, StateNames
from authproxy.tasks import raise_if_cancelled

log = structlog.stdlib.get_logger(__name__)

RETRY_FIRST: Final = 0.05
RETRY_MAX: Final = 1.0
NOT_LOADED: Final = "Redis unreachable"
NOT_INITIALISED: Final = (
    "no key store in Redis (a new or emptied server?): "
    "create a key or run `authproxy keys import`"
)


class KeyFeed:
    """Keep ``on_table`` fed with the Redis key table; tell whether it is fresh."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        names: StateNames,
        on_table: Callable[[KeyTable], None],
        *,
        stale_after: float,
        signing: Callable[[], SigningKeys] | None = None,
        on_signing: Callable[[SigningKeys], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.names = names
        self.stale_after = stale_after
        self.reloads = 0
        self.failures = 0
        self.table = KeyTable()
        self.problem: str | None = NOT_LOADED
        self._on_table = on_table
        self._signing = signing
        self._on_signing = on_signing
        self._monotonic = monotonic
        self._heard = -float("inf")
        self._version = 0
        self._last_id = "0-0"
        self._lock = asyncio.Lock()
        self._lost = False  # a failure since the last whole load
        # A blocking read returns at least this often, so silence is noticed.
        self._block_ms = round(min(max(stale_after / 4, 0.05), 1.0) * 1000)

    def fresh(self) -> bool:
        """Tell whether the table is current: Redis answered within ``stale_after``."""
        return (
            self.problem is None and self._monotonic() - self._heard < self.stale_after
        )

    def state(self) -> str | None:
        """Return why the table cannot be trusted now, or ``None``."""
        if self.problem is not None:
            return self.problem
        if not self.fresh():
            return f"no word from Redis for {self.stale_after:g} s"
        return None

    async def load_initial(self) -> KeyTable:
        """Load the table; an unreachable Redis leaves it empty and stale."""
        try:
            await self._load()
        except (RedisError, OSError, KeyStoreError) as err:
            self._failed(err)
        await self.reload_signing(force=True)
        return self.table

    async def reload(self, *, force: bool = False) -> bool:
        """Catch up with the stream now (after a write through this replica).

        Returns:
            Whether a change was put in service.
        """
        try:
            before = self._version
            if force and (self.problem is not None or self._lost):
                await self._load()
            else:
                await self._read(block=None)
        except (RedisError, OSError, KeyStoreError) as err:
            self._failed(err)
            return False
        return self._version != before

    async def reload_signing(self, *, force: bool = False) -> None:
        """Load the JWT signing keys again (with ``force``, or on a feed entry)."""
        if self._signing is None or self._on_signing is None or not force:
            return
        loop = asyncio.get_running_loop()
        try:
            keys = await loop.run_in_executor(None, self._signing)
        except KeyStoreError as err:
            log.error("signing_keys_unavailable", error=str(err))
            return
        self._on_signing(keys)

    async def run(self) -> None:
        """Follow the stream forever; cancel the task to stop."""
        delay = RETRY_FIRST
        while True:
            raise_if_cancelled()
            try:
                if self.problem is not None or self._lost:
                    await self._load()
                await self._read(block=self._block_ms)
                delay = RETRY_FIRST
            except (RedisError, OSError, KeyStoreError) as err:
                self._failed(err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    def _failed(self, err: BaseException) -> None:
        """Note a failure; the table goes stale only once ``stale_after`` passes.

        A connection that drops and comes back within the bound costs nothing,
        but the next read reloads the whole table: Redis may have restarted.
        """
        self.failures += 1
        if not self._lost:
            log.error("keystore_feed_lost", error=_describe(err))
        self._lost = True
        if isinstance(err, KeyStoreError):
            self.problem = str(err)

    def _was_heard(self) -> None:
        self._heard = self._monotonic()

    async def _load(self) -> None:
        """Take a consistent snapshot: version, records, the stream's last entry."""
        async with self._lock:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.get(self.names.version)
                pipe.hgetall(self.names.records)
                pipe.xrevrange(self.names.feed, count=1)
                version, records, last = await pipe.execute()
            self._was_heard()
            if version is None:
                if self.problem != NOT_INITIALISED:
                    log.error("keystore_missing", error=NOT_INITIALISED)
                self.problem = NOT_INITIALISED
                return
            self._put(table_from_hash(records))
            self._version = int(version)
            self._last_id = last[0][0] if last else "0-0"
            if self.problem is not None or self._lost:
                log.info("keystore_feed_caught_up", keys=len(self.table.records))
            self.problem = None
            self._lost = False
            self.reloads += 1

    async def _read(self, *, block: int | None) -> None:
        """Read and apply what the stream holds after the last entry applied."""
        # decode_responses: replies are text; redis-py types allow bytes too.
        reply: Any = await self.client.xread(
            {self.names.feed: self._last_id}, count=500, block=block
        )
        self._was_heard()
        entries = reply[0][1] if reply else []
        if not entries:
            await self._check_version()
            return
        signing = False
        async with self._lock:
            for entry_id, fields in entries:
                if int(fields.get("v", 0)) <= self._version:
                    continue  # applied already (a reload raced the loop)
                if int(fields["v"]) != self._version + 1:
                    break  # a gap (the stream was trimmed): reload it whole
                if fields["op"] == "signing":
                    signing = True
                else:
                    await self._apply(fields["ids"])
                self._version = int(fields["v"])
                self._last_id = entry_id
            else:
                if signing:
                    await self.reload_signing(force=True)
                return
        await self._load()

    async def _apply(self, ids: str) -> None:
        changed = [i for i in ids.split(",") if i]
        values: list[Any] = await self.client.hmget(self.names.records, changed)
        table = self.table
        for key_id, text in zip(changed, values, strict=True):
            if text is None:
                table = KeyTable(tuple(r for r in table.records if r.id != key_id))
            elif key_id in table.by_id:
                table = table.replace(decode_record(key_id, text))
            else:
                table = table.add(decode_record(key_id, text))
        self._put(table)

    async def _check_version(self) -> None:
        """Notice a store emptied or replaced behind the stream's back."""
        version: Any = await self.client.get(self.names.version)
        if version is None or int(version) < self._version:
            self.problem = NOT_INITIALISED if version is None else "store replaced"
            await self._load()

    def _put(self, table: KeyTable) -> None:
        self.table = table
        self._on_table(table)


def _describe(err: BaseException) -> Any:
    return str(err) if isinstance(err, KeyStoreError) else "Redis unreachable"
