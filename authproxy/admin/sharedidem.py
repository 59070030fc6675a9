"""The admin idempotency cache in Redis, shared by every replica (backend redis).

A retried create or rotate with the same ``Idempotency-Key`` gets the same
reply, with the same token, on any replica. The reply holds a usable token,
so Redis never holds it in the clear:

- **The name** of an entry is ``sha256`` over the admin principal, the action,
  the key it acts on and the ``Idempotency-Key`` (length-prefixed, with a
  label). It reveals none of them.
- **The reply is sealed** with AES-256-GCM under a key derived with
  HKDF-SHA256 from the ``Idempotency-Key`` and the same context; the name is
  the associated data, so a sealed reply cannot be moved to another entry.
  The body's digest is kept as an HMAC under a second derived key, never
  plain, so a short body cannot be guessed from it either. Without the
  client's ``Idempotency-Key`` a dump of Redis reveals nothing. The
  protection is as strong as that key: clients should send a random one (a
  UUID), as the IETF draft on the header asks.
- **One try at a time.** A try claims its entry with one ``SET NX`` holding
  ``pending``, for at most ``CLAIM_TTL`` (a crashed replica's claim lapses).
  Another try with the same key, on any replica, polls until the sealed reply
  is there or answers ``409`` "still in progress" after ``WAIT``. The owner
  replaces its claim with the sealed reply (for ``admin.idempotency_ttl``)
  or, when the action failed, deletes it; both by a script that checks the
  claim is still its own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import time
from typing import Any, Final

import redis.asyncio
import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from authproxy.admin.idempotency import (
    WAIT,
    IdempotencyCache,
    Reply,
    Slot,
    in_progress,
    reused,
)
from authproxy.config.model import Config
from authproxy.errors import Denied
from authproxy.state.connection import RedisError, StateNames, async_client

log = structlog.stdlib.get_logger(__name__)

# Longer than any create or rotate takes (argon2 and one Redis write).
CLAIM_TTL: Final = 60.0
POLL: Final = 0.05
NAME_LABEL: Final = b"authproxy idempotency name v1"
KEY_LABEL: Final = b"authproxy idempotency keys v1"
NONCE_BYTES: Final = 12

# KEYS: the entry. ARGV: this try's claim, the sealed reply, its TTL (ms).
KEEP: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
# KEYS: the entry. ARGV: this try's claim.
RELEASE: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


def _context(slot: Slot, *, given: bool) -> bytes:
    """Encode who, what and (for the name) the key, length-prefixed."""
    parts = [slot.actor, slot.action, slot.ref] + ([slot.given] if given else [])
    encoded = [p.encode() for p in parts]
    return b"".join(len(p).to_bytes(4, "big") + p for p in encoded)


def entry_digest(slot: Slot) -> str:
    """Return the hex name of ``slot``'s entry: nothing in it can be read back."""
    return hashlib.sha256(NAME_LABEL + _context(slot, given=True)).hexdigest()


def _derived_keys(slot: Slot) -> tuple[bytes, bytes]:
    """Return the sealing key and the body-digest key, both from the client's key."""
    okm = HKDF(
        algorithm=SHA256(),
        length=64,
        salt=hashlib.sha256(KEY_LABEL).digest(),
        info=KEY_LABEL + _context(slot, given=False),
    ).derive(slot.given.encode())
    return okm[:32], okm[32:]


class SharedIdempotency(IdempotencyCache):
    """The idempotency cache in Redis, sealed with the client's ``Idempotency-Key``."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str,
        ttl: float,
        *,
        wait: float = WAIT,
    ) -> None:
        super().__init__(ttl, wait=wait)
        self.client = client
        self.names = StateNames(prefix)
        self._keep = client.register_script(KEEP)
        self._release = client.register_script(RELEASE)

    def _name(self, slot: Slot) -> str:
        return self.names.idempotent(entry_digest(slot))

    @staticmethod
    def _claim_value(slot: Slot, mac: str) -> str:
        return f"pending {slot.attempt} {mac}"

    @staticmethod
    def _mac(slot: Slot, key: bytes) -> str:
        return hmac.new(key, slot.digest.encode(), hashlib.sha256).hexdigest()

    async def claim(self, slot: Slot) -> Reply | None:
        """Return the sealed reply of an earlier try, or claim the entry.

        Raises:
            Denied: 409 for another body or a try still in progress; 503 when
                Redis cannot be reached.
        """
        name = self._name(slot)
        seal, body_key = _derived_keys(slot)
        mac = self._mac(slot, body_key)
        claim = self._claim_value(slot, mac)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                earlier: Any = await self.client.set(
                    name, claim, nx=True, get=True, px=round(CLAIM_TTL * 1000)
                )
            except (RedisError, OSError):
                raise _unavailable() from None
            if earlier is None:
                return None
            kind, _, rest = earlier.partition(" ")
            if kind == "done":
                their_mac, _, sealed = rest.partition(" ")
                if not _same(their_mac, mac):
                    raise reused()
                return _open(seal, name, sealed)
            _, _, their_mac = rest.partition(" ")
            if not _same(their_mac, mac):
                raise reused()
            if time.monotonic() >= deadline:
                raise in_progress()
            await asyncio.sleep(POLL)

    async def keep(self, slot: Slot, reply: Reply) -> None:
        """Replace this try's claim with the sealed reply, for ``ttl``."""
        name = self._name(slot)
        seal, body_key = _derived_keys(slot)
        mac = self._mac(slot, body_key)
        nonce = os.urandom(NONCE_BYTES)
        plain = reply.status.to_bytes(2, "big") + reply.body
        sealed = base64.b64encode(
            nonce + AESGCM(seal).encrypt(nonce, plain, name.encode())
        ).decode()
        args = [self._claim_value(slot, mac), f"done {mac} {sealed}"]
        try:
            kept = await self._keep(keys=[name], args=[*args, round(self.ttl * 1000)])
        except (RedisError, OSError):
            # The action is done and its reply goes out; only a retry within
            # CLAIM_TTL is refused as in progress, and after it runs again.
            log.warning("idempotent_reply_not_kept", action=slot.action)
            return
        if not kept:
            log.warning("idempotency_claim_lapsed", action=slot.action)

    async def release(self, slot: Slot) -> None:
        """Delete this try's claim: the action failed, a retry runs it again."""
        name = self._name(slot)
        _, body_key = _derived_keys(slot)
        try:
            await self._release(
                keys=[name], args=[self._claim_value(slot, self._mac(slot, body_key))]
            )
        except (RedisError, OSError):
            log.warning("idempotency_claim_not_released", action=slot.action)

    async def close(self) -> None:
        """Close the Redis client."""
        await self.client.aclose()


def _same(theirs: str, ours: str) -> bool:
    """Compare digests in constant time (an entry edited by hand may be anything)."""
    return hmac.compare_digest(theirs.encode(), ours.encode())


def _open(seal: bytes, name: str, sealed: str) -> Reply:
    """Open a sealed reply.

    Raises:
        Denied: 409 when it does not open (edited in Redis by hand).
    """
    try:
        raw = base64.b64decode(sealed, validate=True)
        nonce, box = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
        plain = AESGCM(seal).decrypt(nonce, box, name.encode())
    except (ValueError, InvalidTag):
        log.warning("idempotent_reply_unreadable")
        raise reused() from None
    return Reply(int.from_bytes(plain[:2], "big"), plain[2:])


def _unavailable() -> Denied:
    return Denied(
        503, "idempotency_unavailable", "key store unavailable", (("Retry-After", "1"),)
    )


def idempotency_cache(config: Config) -> IdempotencyCache:
    """Return the cache ``config`` asks for: this process's, or Redis's."""
    ttl = config.admin.idempotency_ttl
    if config.state.backend != "redis":
        return IdempotencyCache(ttl)
    state = config.state
    return SharedIdempotency(async_client(state), state.prefix, ttl)
