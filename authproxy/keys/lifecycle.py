"""Key life-cycle operations on the store file, shared by the CLI and the admin API.

Every change runs under the store's lock with an atomic replace, so the CLI
and a running server never lose each other's updates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from argon2 import PasswordHasher

from authproxy.errors import KeyNotFoundError, KeyStoreError
from authproxy.keys.codec import public_data
from authproxy.keys.record import (
    DEFAULT_SCOPES,
    PreviousSecret,
    fingerprint,
    validate_limits,
    validate_models,
    validate_scopes,
)
from authproxy.keys.sshkey import fingerprint_of, parse_public_key
from authproxy.keys.store import (
    KeyRecord,
    KeyTable,
    StoreRef,
    format_token,
    new_key_id,
    new_secret,
    update_store,
    validate_name,
)
from authproxy.times import format_timestamp

MIN_PASSWORD_LENGTH: Final = 12
MAX_NOTE_LENGTH: Final = 500
UPDATABLE: Final = frozenset(
    {"scopes", "models", "limits", "expires_at", "disabled", "note"}
)


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A record plus its new token, which exists only in this object."""

    record: KeyRecord
    token: str | None

    def as_dict(self) -> dict[str, Any]:
        """Return the public record plus ``token`` (``None`` for passwords)."""
        return {**public_data(self.record), "token": self.token}


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySpec:
    """What a new key should be; validated by ``create_key``."""

    name: str
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    models: tuple[str, ...] = ()
    limits: dict[str, Any] | None = None
    expires_at: datetime | None = None
    note: str | None = None
    password: str | None = None
    ollama_public_key: str | None = None  # an id_ed25519.pub line


def create_key(
    path: StoreRef, hasher: PasswordHasher, spec: KeySpec, *, now: datetime
) -> CreatedKey:
    """Add a key to the store and return it with its one-time token.

    Args:
        path: the store file (created if missing).
        hasher: the argon2id hasher.
        spec: name, scopes, model allow-list, expiry, note, and an optional
            chosen password for a Basic-only key or an ``id_ed25519.pub``
            line for an ollama key (else a token is generated).
        now: the creation time.

    Raises:
        KeyStoreError: invalid input, duplicate name, or I/O failure.

    Returns:
        The record and the token (``None`` for a password or ollama key).
    """
    validate_name(spec.name)
    _check_expiry(spec.expires_at, now)
    _check_note(spec.note)
    if spec.ollama_public_key is not None:
        return _create_ollama_key(path, spec, now)
    password = spec.password
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise KeyStoreError(
            f"password too short: use at least {MIN_PASSWORD_LENGTH} characters"
        )
    key_id = new_key_id()
    secret = password if password is not None else new_secret()
    record = KeyRecord(
        id=key_id,
        name=spec.name,
        kind="password" if password is not None else "token",
        scopes=validate_scopes(list(spec.scopes)),
        models=validate_models(list(spec.models)),
        limits=validate_limits(spec.limits),
        note=spec.note,
        created_at=now,
        expires_at=spec.expires_at,
        hash=hasher.hash(secret),
        fingerprint=None if password is not None else fingerprint(secret),
    )

    def change(table: KeyTable) -> tuple[KeyTable, None]:
        return table.add(record), None

    update_store(path, change)
    token = None if password is not None else format_token(key_id, secret)
    return CreatedKey(record, token)


def _create_ollama_key(path: StoreRef, spec: KeySpec, now: datetime) -> CreatedKey:
    """Add a key proved by signatures of an ed25519 key (the ``ollama`` CLI's)."""
    if spec.password is not None:
        raise KeyStoreError("a key has a password or a public key, not both")
    blob = parse_public_key(spec.ollama_public_key or "")
    record = KeyRecord(
        id=new_key_id(),
        name=spec.name,
        kind="ollama",
        scopes=validate_scopes(list(spec.scopes)),
        models=validate_models(list(spec.models)),
        limits=validate_limits(spec.limits),
        note=spec.note,
        created_at=now,
        expires_at=spec.expires_at,
        public_key=blob,
        fingerprint=fingerprint_of(blob),
    )

    def change(table: KeyTable) -> tuple[KeyTable, None]:
        return table.add(record), None

    update_store(path, change)
    return CreatedKey(record, None)


def find_key(table: KeyTable, ref: str) -> KeyRecord:
    """Return the record with id or name ``ref``.

    Raises:
        KeyNotFoundError: there is none.
    """
    record = table.find(ref)
    if record is None:
        raise KeyNotFoundError(f"no key with id or name {ref!r}")
    return record


def update_key(
    path: StoreRef, ref: str, changes: dict[str, Any], *, now: datetime
) -> KeyRecord:
    """Change scopes, models, expires_at, disabled and/or note of a key.

    Disabling a key also ends every JWT issued for it so far.

    Raises:
        KeyNotFoundError: no such key.
        KeyStoreError: an unknown field or invalid value (the message names it).
    """
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise KeyStoreError(f"{sorted(unknown)[0]}: not a field that can be changed")
    values: dict[str, Any] = {}
    if "scopes" in changes:
        values["scopes"] = validate_scopes(changes["scopes"])
    if "models" in changes:
        values["models"] = validate_models(changes["models"])
    if "limits" in changes:
        values["limits"] = validate_limits(changes["limits"])
    if "note" in changes:
        _check_note(changes["note"])
        values["note"] = changes["note"]
    if "expires_at" in changes:
        expires_at = changes["expires_at"]
        if expires_at is not None and not isinstance(expires_at, datetime):
            raise KeyStoreError("expires_at: expected a time or null")
        values["expires_at"] = expires_at
    if "disabled" in changes:
        if not isinstance(changes["disabled"], bool):
            raise KeyStoreError("disabled: expected true or false")
        values["disabled"] = changes["disabled"]

    def change(table: KeyTable) -> tuple[KeyTable, KeyRecord]:
        record = find_key(table, ref)
        if record.revoked_at is not None and values.get("disabled") is False:
            raise KeyStoreError("disabled: a revoked key cannot be enabled again")
        new = dataclasses.replace(record, **values)
        if new.disabled and not record.disabled:
            new = dataclasses.replace(new, tokens_valid_after=now)
        return table.replace(new), new

    return update_store(path, change)


def rotate_key(
    path: StoreRef,
    hasher: PasswordHasher,
    ref: str,
    *,
    grace: timedelta,
    now: datetime,
    public_key: str | None = None,
) -> CreatedKey:
    """Give a key a new secret; the old one works until ``now + grace``.

    A token key gets a new token. An ollama key is rotated by registering a
    new ``public_key`` (an ``id_ed25519.pub`` line); it has no token. The key
    id stays, so the record, its policy and its history stay too.

    Raises:
        KeyNotFoundError: no such key.
        KeyStoreError: a password key, a revoked key, a missing or reused
            public key, or I/O failure.
    """
    blob = parse_public_key(public_key) if public_key is not None else None
    secret = new_secret()
    new_hash = hasher.hash(secret) if blob is None else ""

    def change(table: KeyTable) -> tuple[KeyTable, KeyRecord]:
        record = find_key(table, ref)
        if record.revoked_at is not None:
            raise KeyStoreError("a revoked key cannot be rotated")
        if record.kind == "password":
            raise KeyStoreError("only token and ollama keys can be rotated")
        if (record.kind == "ollama") != (blob is not None):
            raise KeyStoreError(
                "an ollama key is rotated by registering a new public key"
                if record.kind == "ollama"
                else "a public key is only for an ollama key"
            )
        previous = tuple(p for p in record.previous if now < p.until)
        if grace > timedelta(0):
            old = PreviousSecret(
                hash=record.hash,
                fingerprint=record.fingerprint,
                public_key=record.public_key,
                until=now + grace,
            )
            previous = (*previous, old)
        if blob is not None:
            owner = table.by_public_key.get(blob)
            if owner is not None:
                raise KeyStoreError("this public key already belongs to a key")
            new = dataclasses.replace(
                record, public_key=blob, fingerprint=fingerprint_of(blob)
            )
        else:
            new = dataclasses.replace(
                record, hash=new_hash, fingerprint=fingerprint(secret)
            )
        new = dataclasses.replace(new, previous=previous)
        return table.replace(new), new

    record = update_store(path, change)
    token = format_token(record.id, secret) if blob is None else None
    return CreatedKey(record, token)


def revoke_key(path: StoreRef, ref: str, *, now: datetime) -> tuple[KeyRecord, bool]:
    """Disable a key for good, by id or name; its JWTs die with it.

    Raises:
        KeyNotFoundError: no such key.
        KeyStoreError: I/O failure.

    Returns:
        The record and whether it was newly revoked.
    """

    def change(table: KeyTable) -> tuple[KeyTable, tuple[KeyRecord, bool]]:
        record = find_key(table, ref)
        if record.revoked_at is not None:
            return table, (record, False)
        revoked = dataclasses.replace(
            record, disabled=True, revoked_at=now, previous=(), tokens_valid_after=now
        )
        return table.replace(revoked), (revoked, True)

    return update_store(path, change)


def key_status(record: KeyRecord, now: datetime) -> str:
    """Describe a key's state: active, disabled, expired or revoked."""
    if record.revoked_at is not None:
        return "revoked"
    if record.disabled:
        return "disabled"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    return "active"


def describe(record: KeyRecord, now: datetime) -> dict[str, Any]:
    """Return the public view of a record, with its status."""
    return {**public_data(record), "status": key_status(record, now)}


def format_when(value: datetime | None) -> str:
    """Format an optional time for tables."""
    return format_timestamp(value) if value is not None else "-"


def _check_expiry(expires_at: datetime | None, now: datetime) -> None:
    if expires_at is not None and expires_at <= now:
        raise KeyStoreError("expires_at: must be in the future")


def _check_note(note: Any) -> None:
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE_LENGTH):
        raise KeyStoreError(
            f"note: expected text of at most {MAX_NOTE_LENGTH} characters"
        )
