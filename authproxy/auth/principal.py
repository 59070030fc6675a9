"""Principals, the verification cache entry, why a check failed, the limiter gate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from authproxy.errors import AuthenticationError
from authproxy.keys.record import KeyRecord


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: which key, how it was presented, what it may do."""

    key_id: str
    key_name: str
    scheme: str
    scopes: frozenset[str] = frozenset()
    model_rules: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def of(
        cls,
        record: KeyRecord,
        scheme: str,
        scopes: frozenset[str] | None = None,
        token_models: tuple[str, ...] = (),
    ) -> Principal:
        """Build the principal of a verified key (optionally narrowed by a JWT)."""
        key_scopes = frozenset(record.scopes)
        return cls(
            record.id,
            record.name,
            scheme,
            key_scopes if scopes is None else key_scopes & scopes,
            tuple(r for r in (record.models, token_models) if r),
        )


def still_valid(record: KeyRecord, stored_hash: str, now: datetime) -> bool:
    """Tell whether ``stored_hash`` is still one of the record's valid secrets."""
    return any(h == stored_hash for h, _ in record.hashes_at(now))


@dataclass(slots=True)
class CacheEntry:
    """A verification cache entry: the key and the stored hash a secret matched."""

    key_id: str
    hash: str
    expires: float
    # The principal last answered from this entry, and the record it is of.
    principal: Principal | None = None
    record: KeyRecord | None = None

    def principal_for(self, record: KeyRecord, scheme: str) -> Principal:
        """Return the principal of ``record``, built again only if it changed."""
        principal = self.principal
        if principal is None or self.record is not record or principal.scheme != scheme:
            principal = self.principal = Principal.of(record, scheme)
            self.record = record
        return principal


class VerifyFailedError(AuthenticationError):
    """Verification failed; ``reason`` and ``key_id`` are safe to log."""

    def __init__(self, reason: str, key_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.key_id = key_id


class GuessRefusedError(AuthenticationError):
    """The client may not start another argon2 check now (brute-force limiter)."""


class Gate(Protocol):
    """Admits a client's argon2 checks; the verifier settles each one it admitted."""

    def enter(self) -> bool:
        """Reserve one argon2 check for the client; ``False`` refuses it."""

    def settle(self, *, failed: bool) -> None:
        """Release the reservation once the check has finished (failed or not)."""


# Refusals of a key whose credential verified: its 401 may say which.
KEY_STATE_MESSAGES: Final = {
    "key_revoked": "key revoked",
    "key_disabled": "key disabled",
    "key_expired": "key expired",
}


def check_usable(record: KeyRecord, now: datetime) -> None:
    """Refuse a revoked, disabled or expired key.

    Warning:
        Call it only once the credential verified: its reasons (answered to
        the client, see ``KEY_STATE_MESSAGES``) tell the key's state.

    Raises:
        VerifyFailedError: ``key_revoked``, ``key_disabled`` or ``key_expired``.
    """
    if record.revoked_at is not None:
        raise VerifyFailedError("key_revoked", record.id)
    if record.disabled:
        raise VerifyFailedError("key_disabled", record.id)
    if not record.usable_at(now):
        raise VerifyFailedError("key_expired", record.id)


@dataclass(slots=True)
class VerifyStats:
    """Counters for tests, logs and metrics."""

    cache_hits: int = 0
    cache_misses: int = 0
    argon2_verifications: int = 0
    jwt_verifications: int = 0
    signature_verifications: int = 0
    shared_verifications: int = 0
    rehashes: int = 0
