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
from authproxy.keys.codec import describe
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
    """A record plus its new token, which exists only in this object.

    A rotation also says until when the previous secret works.
    """

    record: KeyRecord
    token: str | None
    rotated: bool = False
    previous_valid_until: datetime | None = None

    def as_dict(self, now: datetime) -> dict[str, Any]:
        """Return ``describe`` plus ``token`` (``None`` for password and ollama keys).

        A rotation adds ``previous_valid_until`` (``None``: the old one stopped).
        """
        data = {**describe(self.record, now), "token": self.token}
        if self.rotated:
            until = self.previous_valid_until
            data["previous_valid_until"] = format_timestamp(until) if until else None
        return data


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
    policy: dict[str, Any] = {
        "id": new_key_id(),
        "name": spec.name,
        "scopes": validate_scopes(list(spec.scopes)),
        "models": validate_models(list(spec.models)),
        "limits": validate_limits(spec.limits),
        "note": spec.note,
        "created_at": now,
        "expires_at": spec.expires_at,
    }
    token = None
    if spec.ollama_public_key is not None:
        if spec.password is not None:
            raise KeyStoreError("a key has a password or a public key, not both")
        blob = parse_public_key(spec.ollama_public_key)
        proof: dict[str, Any] = {"kind": "ollama", "public_key": blob}
        proof["fingerprint"] = fingerprint_of(blob)
    elif spec.password is not None:
        check_password(spec.password)
        proof = {"kind": "password", "hash": hasher.hash(spec.password)}
    else:
        secret = new_secret()
        token = format_token(policy["id"], secret)
        proof = {"kind": "token", "hash": hasher.hash(secret)}
        proof["fingerprint"] = fingerprint(secret)
    record = KeyRecord(**policy, **proof)

    def change(table: KeyTable) -> tuple[KeyTable, None]:
        return table.add(record), None

    update_store(path, change)
    return CreatedKey(record, token)


def check_password(password: str) -> None:
    """Refuse a chosen password that is too short.

    Raises:
        KeyStoreError: fewer than ``MIN_PASSWORD_LENGTH`` characters.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise KeyStoreError(
            f"password too short: use at least {MIN_PASSWORD_LENGTH} characters"
        )


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
    password: str | None = None,
) -> CreatedKey:
    """Give a key a new secret; the old one works until ``now + grace``.

    A token key gets a new token. An ollama key is rotated by registering a
    new ``public_key`` (an ``id_ed25519.pub`` line); it has no token. A
    password key is given a new ``password`` (``keys passwd``). The key id
    stays, so the record, its policy and its history stay too.

    Raises:
        KeyNotFoundError: no such key.
        KeyStoreError: a revoked key, a proof for another kind of key (a
            password for a token key, none for a password key), a reused
            public key, a short password, or I/O failure.
    """
    blob = parse_public_key(public_key) if public_key is not None else None
    if password is not None:
        check_password(password)
    kind = "ollama" if blob else "password" if password is not None else "token"
    secret = password if password is not None else new_secret()
    new_hash = hasher.hash(secret) if blob is None else ""

    def change(table: KeyTable) -> tuple[KeyTable, KeyRecord]:
        record = find_key(table, ref)
        if record.revoked_at is not None:
            raise KeyStoreError("a revoked key cannot be rotated")
        if record.kind != kind:
            raise KeyStoreError(_wrong_kind(record.kind, kind))
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
            # Never a fingerprint of a chosen password: it would help guess it.
            mark = fingerprint(secret) if kind == "token" else None
            new = dataclasses.replace(record, hash=new_hash, fingerprint=mark)
        new = dataclasses.replace(new, previous=previous)
        return table.replace(new), new

    record = update_store(path, change)
    token = format_token(record.id, secret) if kind == "token" else None
    until = now + grace if grace > timedelta(0) else None
    return CreatedKey(record, token, rotated=True, previous_valid_until=until)


def _wrong_kind(kind: str, wanted: str) -> str:
    """Say why a rotation's new proof does not fit a key of ``kind``."""
    if wanted == "ollama":
        return "a public key is only for an ollama key"
    if wanted == "password":
        return "only a password key has a password to change"
    if kind == "ollama":
        return "an ollama key is rotated by registering a new public key"
    return (
        "only token and ollama keys can be rotated; "
        "change a password key's password with passwd"
    )


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
