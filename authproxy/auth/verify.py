"""Verify presented credentials against the key table.

argon2 runs in a bounded pool (authproxy/argon2pool.py). Successful
verifications are cached under a keyed BLAKE2b MAC of the credential (never
the credential itself) and re-checked against the live record on every hit, so a
disabled, expired, deleted or changed key stops working at once.

A revoked, disabled or expired key is refused with a reason of its own only
once the caller proved its secret (``principal.check_usable``): it holds the
key already, so telling it why is no oracle. A secret rotated out and past its
grace is no secret of the key any more: a wrong secret, like any other.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Final

import structlog
from argon2 import PasswordHasher

from authproxy.auth.argon2pool import Argon2Pool
from authproxy.auth.credentials import Credential
from authproxy.auth.jwt import principal_from_jwt
from authproxy.auth.principal import (
    CacheEntry,
    Gate,
    Principal,
    VerifyFailedError,
    VerifyStats,
    check_usable,
    still_valid,
)
from authproxy.auth.signature import SCHEME, SeenSignatures, signature_valid
from authproxy.errors import Denied
from authproxy.keys.record import fingerprint
from authproxy.keys.signing import SigningKeys, looks_like_jwt
from authproxy.keys.store import KeyRecord, KeyTable, parse_token
from authproxy.times import Clock, utc_now

log = structlog.stdlib.get_logger(__name__)


PersistHash = Callable[[str, str, str], None]
# A replica whose shared key table may be behind (keys.feed) answers this
# rather than trust a table that could still list a revoked key.
STALE_RETRY: Final = (("Retry-After", "1"),)


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
        signature_window: float = 300.0,
    ) -> None:
        self.table = KeyTable()
        # Whether ``table`` is current; the Redis backend's feed says.
        self.available: Callable[[], bool] = lambda: True
        self.signature_window = signature_window
        self._seen = SeenSignatures(signature_window)
        self.signing_keys = signing_keys
        self.stats = VerifyStats()
        self._hasher = hasher
        self._pool = Argon2Pool(
            hasher, workers=workers, queue=queue, stats=self.stats, on_verify=on_verify
        )
        self.workers = workers
        self._cache: OrderedDict[bytes, CacheEntry] = OrderedDict()
        self._cache_key = secrets.token_bytes(32)
        self._cache_ttl = cache_ttl
        self._cache_size = cache_size
        self._clock = clock
        self._monotonic = monotonic
        self._persist_hash = persist_hash
        self._rehashing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def now(self) -> datetime:
        """Return the time by the verifier's clock (injected in tests)."""
        return self._clock()

    @property
    def pending(self) -> int:
        """Return how many verifications are running or queued."""
        return self._pool.pending

    def set_table(self, table: KeyTable) -> None:
        """Swap in a new key table and drop cache entries it invalidates."""
        self.table = table
        now = self._clock()
        for digest, entry in list(self._cache.items()):
            record = table.by_id.get(entry.key_id)
            if record is None or not still_valid(record, entry.hash, now):
                del self._cache[digest]

    async def authenticate(
        self, credential: Credential, gate: Gate | None = None
    ) -> Principal:
        """Verify a credential.

        Every uncached Basic credential costs one argon2 check, whether its
        user name matches a password key, a token key or nothing, so names
        cannot be told apart by the work done (other schemes carry a key id,
        and a wrong one is refused without argon2 whether or not it exists).

        Args:
            credential: the parsed, unverified credential.
            gate: admits every argon2 check this call would start (the
                brute-force limiter); cache hits and JWTs never ask it.

        Raises:
            VerifyFailedError: unknown key, wrong secret, disabled or expired.
            GuessRefusedError: ``gate`` refused the argon2 check.
            Denied: 503, the key table may be behind (see ``available``).
            VerifyBusyError: the verification queue is full.

        Returns:
            The principal the credential belongs to.
        """
        if not self.available():
            raise Denied(503, "keystore_stale", "key store unavailable", STALE_RETRY)
        if credential.scheme == SCHEME:
            return self._signed(credential)
        if credential.scheme != "basic" and looks_like_jwt(credential.secret):
            if self.signing_keys is None:
                raise VerifyFailedError("jwt_disabled")
            principal = principal_from_jwt(
                self.signing_keys, self.table, credential.secret, self._clock()
            )
            self.stats.jwt_verifications += 1
            return principal
        try:
            record, secret = self._resolve(credential)
        except VerifyFailedError as err:
            await self._decoy(credential, err, gate)
            raise
        digest = self._digest(record.id, secret)
        entry = self._cache.get(digest)
        tick = self._monotonic()
        if entry is not None and entry.expires > tick:
            cached = self._cached(entry, record, credential.scheme)
            if cached is not None:
                return cached
        now = self._clock()
        self.stats.cache_misses += 1
        candidates = record.hashes_at(now)
        if record.kind == "token":
            # A token's fingerprint picks its hash; a mismatch costs no argon2.
            presented = fingerprint(secret)
            candidates = [c for c in candidates if c[1] in {None, presented}]
        if not candidates:
            mismatch = VerifyFailedError("wrong_secret", record.id)
            await self._decoy(credential, mismatch, gate)
            raise mismatch
        hashes = [h for h, _ in candidates]
        matched = await self._pool.once(
            digest, lambda: self._match(record.id, hashes, secret), gate
        )
        # The table may have been swapped while argon2 ran.
        current = self.table.by_id.get(record.id)
        if current is None or not still_valid(current, matched, self._clock()):
            raise VerifyFailedError("changed", record.id)
        self._remember(digest, record.id, matched, tick)
        check_usable(current, self._clock())  # proved: it may say why
        if matched == current.hash:
            self._maybe_rehash(current, secret)
        return Principal.of(current, credential.scheme)

    def _cached(
        self, entry: CacheEntry, record: KeyRecord, scheme: str
    ) -> Principal | None:
        """Answer from a cache entry (it proves the secret), or ``None`` if stale.

        The warm path reads the clock only for a secret in its grace or a key
        with an expiry, revocation or disabling to check.
        """
        if entry.hash != record.hash and not still_valid(
            record, entry.hash, self._clock()
        ):
            return None
        if record.revoked_at is not None or record.disabled or record.expires_at:
            check_usable(record, self._clock())
        self.stats.cache_hits += 1
        return entry.principal_for(record, scheme)

    def _signed(self, credential: Credential) -> Principal:
        """Verify an ``ollama`` CLI signature; no argon2, one Ed25519 check.

        Raises:
            VerifyFailedError: an unknown or retired public key, a wrong
                signature, a replay, or (once the signature verified) a
                revoked, disabled or expired key.
        """
        blob, challenge = credential.username or "", credential.challenge
        record = self.table.by_public_key.get(blob)
        if record is None or challenge is None or credential.signed_at is None:
            raise VerifyFailedError("unknown_key")
        now = self._clock()
        if blob not in record.public_keys_at(now):
            raise VerifyFailedError("wrong_secret", record.id)  # past its grace
        self.stats.signature_verifications += 1
        if not signature_valid(blob, credential.secret, challenge):
            raise VerifyFailedError("wrong_secret", record.id)
        if not self._seen.first_use(
            credential.secret, credential.signed_at, now.timestamp()
        ):
            raise VerifyFailedError("replayed", record.id)
        check_usable(record, now)
        return Principal.of(record, SCHEME)

    def _digest(self, *parts: str) -> bytes:
        # Keyed BLAKE2b is a MAC, and cheaper per request than HMAC-SHA256.
        return hashlib.blake2b(
            "\0".join(parts).encode(), key=self._cache_key, digest_size=32
        ).digest()

    async def _decoy(
        self, credential: Credential, err: VerifyFailedError, gate: Gate | None
    ) -> None:
        """Spend a Basic refusal's argon2 check on a hash no secret matches.

        Goes through the gate and the bounded queue like a real check, so it
        counts as a guess and a flood of unknown names is bounded too. Other
        schemes return at once.

        Raises:
            VerifyFailedError: ``err`` again, once the check is done.
            GuessRefusedError: the gate refused the check.
            VerifyBusyError: the verification queue is full.
        """
        if credential.scheme != "basic":
            return
        # Record ids are never empty, so this digest cannot be a real entry's.
        username, secret = credential.username or "", credential.secret
        digest = self._digest("", "decoy", username, secret)

        async def check() -> str:
            await self._pool.verify(self._pool.decoy, secret)
            raise VerifyFailedError(err.reason, err.key_id)

        await self._pool.once(digest, check, gate)

    async def _match(self, key_id: str, hashes: list[str], secret: str) -> str:
        """Return the stored hash ``secret`` matches (one argon2 verify, normally)."""
        for stored_hash in hashes:
            if await self._pool.verify(stored_hash, secret):
                return stored_hash
        raise VerifyFailedError("wrong_secret", key_id)

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

    def _remember(self, digest: bytes, key_id: str, matched: str, now: float) -> None:
        if self._cache_ttl <= 0:
            return
        self._cache[digest] = CacheEntry(key_id, matched, now + self._cache_ttl)
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
            new_hash = await self._pool.hash(secret)
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
        self._pool.close()
