"""Verify presented credentials against the key table, off the event loop.

argon2 runs in a bounded thread pool behind a bounded queue. Successful
verifications are cached under a keyed BLAKE2b MAC of the credential (never
the credential itself) and re-checked against the live record on every hit, so a
disabled, expired, deleted or changed key stops working at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from authproxy.credentials import Credential
from authproxy.errors import VerifyBusyError
from authproxy.jwtauth import principal_from_jwt
from authproxy.keyrecord import fingerprint
from authproxy.keystore import KeyRecord, KeyTable, parse_token
from authproxy.principal import (
    Principal,
    VerifyFailedError,
    VerifyStats,
    check_usable,
)
from authproxy.signing import SigningKeys, looks_like_jwt
from authproxy.times import Clock, utc_now

log = structlog.stdlib.get_logger(__name__)


PersistHash = Callable[[str, str, str], None]


def _lower_priority() -> None:
    """Run argon2 at nice 19 so a flood of checks cannot starve the event loop.

    On Linux the nice value is per thread and inherited by the lanes argon2
    starts, so valid (cached) requests keep their latency under a flood.
    """
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def _still_valid(record: KeyRecord, stored_hash: str, now: datetime) -> bool:
    """Tell whether ``stored_hash`` is still one of the record's valid secrets."""
    return any(h == stored_hash for h, _ in record.hashes_at(now))


@dataclass(slots=True)
class _Entry:
    key_id: str
    hash: str
    expires: float


class Verifier:
    """Authenticate credentials against the current key table."""

    def __init__(
        self,
        hasher: PasswordHasher,
        *,
        workers: int,
        queue: int,
        cache_ttl: float,
        cache_size: int,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        persist_hash: PersistHash | None = None,
        signing_keys: SigningKeys | None = None,
        on_verify: Callable[[float], None] | None = None,
    ) -> None:
        self.table = KeyTable()
        self.signing_keys = signing_keys
        self._on_verify = on_verify
        self.stats = VerifyStats()
        self._hasher = hasher
        self._executor = ThreadPoolExecutor(
            workers, thread_name_prefix="argon2", initializer=_lower_priority
        )
        self.workers = workers
        self._slots = asyncio.Semaphore(workers)
        self._capacity = workers + queue
        self._pending = 0
        self._cache: OrderedDict[bytes, _Entry] = OrderedDict()
        self._cache_key = secrets.token_bytes(32)
        self._cache_ttl = cache_ttl
        self._cache_size = cache_size
        self._clock = clock
        self._monotonic = monotonic
        self._persist_hash = persist_hash
        self._rehashing: set[str] = set()
        self._inflight: dict[bytes, asyncio.Task[str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Return how many verifications are running or queued."""
        return self._pending

    def set_table(self, table: KeyTable) -> None:
        """Swap in a new key table and drop cache entries it invalidates."""
        self.table = table
        now = self._clock()
        for digest, entry in list(self._cache.items()):
            record = table.by_id.get(entry.key_id)
            if record is None or not _still_valid(record, entry.hash, now):
                del self._cache[digest]

    async def authenticate(self, credential: Credential) -> Principal:
        """Verify a credential.

        Args:
            credential: the parsed, unverified credential.

        Raises:
            VerifyFailedError: unknown key, wrong secret, disabled or expired.
            VerifyBusyError: the verification queue is full.

        Returns:
            The principal the credential belongs to.
        """
        if credential.scheme != "basic" and looks_like_jwt(credential.secret):
            if self.signing_keys is None:
                raise VerifyFailedError("jwt_disabled")
            principal = principal_from_jwt(
                self.signing_keys, self.table, credential.secret, self._clock()
            )
            self.stats.jwt_verifications += 1
            return principal
        record, secret = self._resolve(credential)
        now = self._clock()
        check_usable(record, now)
        # Keyed BLAKE2b is a MAC, and cheaper per request than HMAC-SHA256.
        digest = hashlib.blake2b(
            f"{record.id}\0{secret}".encode(), key=self._cache_key, digest_size=32
        ).digest()
        entry = self._cache.get(digest)
        tick = self._monotonic()
        if (
            entry is not None
            and entry.expires > tick
            and _still_valid(record, entry.hash, now)
        ):
            self.stats.cache_hits += 1
            return Principal.of(record, credential.scheme)
        self.stats.cache_misses += 1
        matched = await self._match_once(digest, record, secret, now)
        # The table may have been swapped while argon2 ran.
        current = self.table.by_id.get(record.id)
        if current is None or not _still_valid(current, matched, self._clock()):
            raise VerifyFailedError("changed", record.id)
        self._remember(digest, record.id, matched, tick)
        if matched == current.hash:
            self._maybe_rehash(current, secret)
        return Principal.of(current, credential.scheme)

    async def _match_once(
        self, digest: bytes, record: KeyRecord, secret: str, now: datetime
    ) -> str:
        """Run one verification per credential, however many requests wait on it.

        A client opening many connections with a new token, or a restart under
        load, would otherwise queue one argon2 check per request. The check is
        its own task, so a waiter that gives up does not cancel it for others.
        """
        task = self._inflight.get(digest)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._match(record, secret, now)
            )
            self._inflight[digest] = task
            task.add_done_callback(lambda done: self._settled(digest, done))
        else:
            self.stats.shared_verifications += 1
        return await asyncio.shield(task)

    def _settled(self, digest: bytes, task: asyncio.Task[str]) -> None:
        self._inflight.pop(digest, None)
        if not task.cancelled():
            task.exception()  # retrieved even if every waiter left

    async def _match(self, record: KeyRecord, secret: str, now: datetime) -> str:
        """Return the stored hash ``secret`` matches (one argon2 verify, normally)."""
        candidates = record.hashes_at(now)
        if record.kind == "token":
            # A token's fingerprint picks its hash; a mismatch costs no argon2.
            presented = fingerprint(secret)
            candidates = [c for c in candidates if c[1] in {None, presented}]
        for stored_hash, _ in candidates:
            if await self._verify(stored_hash, secret):
                return stored_hash
        raise VerifyFailedError("wrong_secret", record.id)

    def _resolve(self, credential: Credential) -> tuple[KeyRecord, str]:
        if credential.scheme == "basic":
            record = self.table.find(credential.username or "")
            if record is None:
                raise VerifyFailedError("unknown_key")
            if record.kind == "password":
                return record, credential.secret
            parsed = parse_token(credential.secret)
            if parsed is None or parsed[0] != record.id:
                raise VerifyFailedError("malformed", record.id)
            return record, parsed[1]
        parsed = parse_token(credential.secret)
        if parsed is None:
            raise VerifyFailedError("malformed")
        record = self.table.by_id.get(parsed[0])
        if record is None:
            raise VerifyFailedError("unknown_key", parsed[0])
        if record.kind != "token":
            raise VerifyFailedError("wrong_secret", record.id)
        return record, parsed[1]

    async def _verify(self, stored_hash: str, secret: str) -> bool:
        if self._pending >= self._capacity:
            raise VerifyBusyError("verification queue full")
        self._pending += 1
        try:
            await self._slots.acquire()
            self.stats.argon2_verifications += 1
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(
                self._executor, self._check, stored_hash, secret
            )
            # The slot is held until argon2 really finishes, even if the
            # request is cancelled meanwhile, so the bound stays true.
            future.add_done_callback(lambda _: self._slots.release())
            return await asyncio.shield(future)
        finally:
            self._pending -= 1

    def _check(self, stored_hash: str, secret: str) -> bool:
        started = time.perf_counter()
        try:
            return self._hasher.verify(stored_hash, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        finally:
            if self._on_verify is not None:
                self._on_verify(time.perf_counter() - started)

    def _remember(self, digest: bytes, key_id: str, matched: str, now: float) -> None:
        if self._cache_ttl <= 0:
            return
        self._cache[digest] = _Entry(key_id, matched, now + self._cache_ttl)
        self._cache.move_to_end(digest)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _maybe_rehash(self, record: KeyRecord, secret: str) -> None:
        persist = self._persist_hash
        if persist is None or record.id in self._rehashing:
            return
        if not self._hasher.check_needs_rehash(record.hash):
            return
        self._rehashing.add(record.id)
        task = asyncio.get_running_loop().create_task(
            self._rehash(record, secret, persist)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _rehash(
        self, record: KeyRecord, secret: str, persist: PersistHash
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            new_hash = await loop.run_in_executor(
                self._executor, self._hasher.hash, secret
            )
            await loop.run_in_executor(None, persist, record.id, record.hash, new_hash)
            self.stats.rehashes += 1
            log.info("key_rehashed", key_id=record.id)
        except Exception as err:  # noqa: BLE001 - a failed upgrade must not hurt auth
            log.warning("key_rehash_failed", key_id=record.id, error=str(err))
        finally:
            self._rehashing.discard(record.id)

    async def close(self) -> None:
        """Finish background rehashes and stop the thread pool."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)
