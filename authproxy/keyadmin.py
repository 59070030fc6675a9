"""Key life-cycle operations on the store file, shared by the CLI and the server."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from argon2 import PasswordHasher

from authproxy.errors import KeyStoreError
from authproxy.keystore import (
    KeyRecord,
    KeyTable,
    format_token,
    new_key_id,
    new_secret,
    update_store,
    validate_name,
)
from authproxy.times import format_timestamp

MIN_PASSWORD_LENGTH: Final = 12


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new record plus its token, which exists only in this object."""

    record: KeyRecord
    token: str | None

    def as_dict(self) -> dict[str, Any]:
        """Return the public record plus ``token`` (``None`` for passwords)."""
        return {**self.record.public(), "token": self.token}


def create_key(
    path: Path,
    hasher: PasswordHasher,
    name: str,
    *,
    now: datetime,
    expires_at: datetime | None = None,
    password: str | None = None,
) -> CreatedKey:
    """Add a key to the store and return it with its one-time token.

    Args:
        path: the store file (created if missing).
        hasher: the argon2id hasher.
        name: the unique key name.
        now: the creation time.
        expires_at: when the key stops working, if ever.
        password: a chosen password for a Basic-only key; otherwise a
            random token is generated.

    Raises:
        KeyStoreError: invalid name or password, duplicate name, or I/O failure.

    Returns:
        The record and the token (``None`` for a password key).
    """
    validate_name(name)
    if expires_at is not None and expires_at <= now:
        raise KeyStoreError("expiry must be in the future")
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise KeyStoreError(
            f"password too short: use at least {MIN_PASSWORD_LENGTH} characters"
        )
    key_id = new_key_id()
    secret = password if password is not None else new_secret()
    record = KeyRecord(
        id=key_id,
        name=name,
        hash=hasher.hash(secret),
        kind="password" if password is not None else "token",
        created_at=now,
        expires_at=expires_at,
    )

    def change(table: KeyTable) -> tuple[KeyTable, None]:
        return table.add(record), None

    update_store(path, change)
    token = None if password is not None else format_token(key_id, secret)
    return CreatedKey(record, token)


def revoke_key(path: Path, ref: str, *, now: datetime) -> tuple[KeyRecord, bool]:
    """Disable a key for good, by id or name.

    Raises:
        KeyStoreError: no such key, or I/O failure.

    Returns:
        The record and whether it was newly revoked.
    """

    def change(table: KeyTable) -> tuple[KeyTable, tuple[KeyRecord, bool]]:
        record = table.find(ref)
        if record is None:
            raise KeyStoreError(f"no key with id or name {ref!r}")
        if record.revoked_at is not None:
            return table, (record, False)
        revoked = dataclasses.replace(record, disabled=True, revoked_at=now)
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
    return {**record.public(), "status": key_status(record, now)}


def format_when(value: datetime | None) -> str:
    """Format an optional time for tables."""
    return format_timestamp(value) if value is not None else "-"
