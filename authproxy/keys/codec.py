"""The store's encoding of a key record: plain data to and from ``KeyRecord``."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime
from typing import Any, Final

from authproxy.errors import KeyStoreError
from authproxy.keys.record import (
    ID_RE,
    KeyLimits,
    KeyRecord,
    PreviousSecret,
    validate_limits,
    validate_models,
    validate_name,
    validate_scopes,
)
from authproxy.keys.sshkey import fingerprint_of, raw_key
from authproxy.times import format_timestamp, parse_timestamp

_OMITTED_WHEN_EMPTY: Final = frozenset({"hash", "public_key"})


def public_data(record: KeyRecord) -> dict[str, Any]:
    """Return the record without hashes or secret fingerprints, for listings.

    An ollama key's public key and its ``SHA256:`` fingerprint are public and
    stay; a token's fingerprint (32 bits of its secret's hash) does not.
    """
    data = record_to_data(record)
    data.pop("hash", None)
    if record.kind != "ollama":
        data.pop("fingerprint", None)
    data["previous"] = [
        {k: v for k, v in p.items() if k in {"until", "public_key", "fingerprint"}}
        if record.kind == "ollama"
        else {"until": p["until"]}
        for p in data["previous"]
    ]
    return data


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
    """Return the public view of a record, with its status.

    The one shape of a key in JSON: the admin API and the CLI's ``--json``.
    """
    return {**public_data(record), "status": key_status(record, now)}


def record_to_data(record: KeyRecord) -> dict[str, Any]:
    """Return the record as plain data for the YAML store.

    A token or password key has no ``public_key`` line and an ollama key no
    ``hash`` line, so stores written before ollama keys existed read the same.
    """
    data: dict[str, Any] = {}
    for fld in dataclasses.fields(record):
        value = getattr(record, fld.name)
        if fld.name in _OMITTED_WHEN_EMPTY and not value:
            continue
        data[fld.name] = _plain(value)
    return data


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, KeyLimits):
        return value.as_dict()
    if isinstance(value, PreviousSecret):
        fields = ("hash", "fingerprint", "public_key", "until")
        return {k: _plain(getattr(value, k)) for k in fields if getattr(value, k)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


_REQUIRED: Final = ("id", "name", "hash", "created_at")
_REQUIRED_OLLAMA: Final = ("id", "name", "public_key", "created_at")
_TIMES: Final = ("created_at", "expires_at", "revoked_at", "tokens_valid_after")


def record_from_data(item: Any) -> KeyRecord:
    """Build a record from parsed YAML, checking every field.

    Raises:
        KeyStoreError: a field is missing, unknown or invalid; the message
            names the field and never quotes hashes.
    """
    if not isinstance(item, dict):
        raise KeyStoreError("expected a mapping")
    known = {f.name for f in dataclasses.fields(KeyRecord)}
    for key in item:
        if key not in known:
            raise KeyStoreError(f"unknown field {key!r}")
    required = _REQUIRED_OLLAMA if item.get("kind") == "ollama" else _REQUIRED
    for key in required:
        if not isinstance(item.get(key), str | date):
            raise KeyStoreError(f"missing or invalid {key!r}")
    values = dict(item)
    for key in _TIMES:
        if values.get(key) is not None:
            values[key] = read_time(key, values[key])
    if not ID_RE.fullmatch(values["id"]):
        raise KeyStoreError("invalid 'id'")
    validate_name(values["name"])
    _check_flags(values)
    _check_proof(values)
    if "scopes" in values:
        values["scopes"] = validate_scopes(values["scopes"])
    if "models" in values:
        values["models"] = validate_models(values["models"] or [])
    values["limits"] = validate_limits(values.get("limits"))
    values["previous"] = tuple(_previous(p) for p in values.get("previous") or [])
    return KeyRecord(**values)


def _check_flags(values: dict[str, Any]) -> None:
    if values.get("kind", "token") not in {"token", "password", "ollama"}:
        raise KeyStoreError("'kind' must be token, password or ollama")
    if not isinstance(values.get("disabled", False), bool):
        raise KeyStoreError("'disabled' must be true or false")
    if not isinstance(values.get("note"), str | None):
        raise KeyStoreError("'note' must be text")


def _check_proof(values: dict[str, Any]) -> None:
    """An ollama key has a public key and no hash; the others the reverse."""
    if values.get("kind") == "ollama":
        if values.get("hash"):
            raise KeyStoreError("an ollama key has no 'hash'")
        _check_public_key(values, "")
    else:
        if values.get("public_key") is not None:
            raise KeyStoreError("only an ollama key has a 'public_key'")
        _check_hash(values.get("hash"), "hash")
        _check_fingerprint(values.get("fingerprint"))


def _check_public_key(values: dict[str, Any], where: str) -> None:
    blob = values.get("public_key")
    if not isinstance(blob, str):
        raise KeyStoreError(f"missing or invalid {where}'public_key'")
    raw_key(blob)
    if values.get("fingerprint") != fingerprint_of(blob):
        raise KeyStoreError(f"{where}'fingerprint' does not match the public key")


def _previous(item: Any) -> PreviousSecret:
    allowed = {"hash", "fingerprint", "public_key", "until"}
    if not isinstance(item, dict) or set(item) - allowed:
        raise KeyStoreError("'previous' entries need hash (or public_key) and until")
    if item.get("public_key") is not None:
        _check_public_key(item, "previous.")
    else:
        _check_hash(item.get("hash"), "previous.hash")
        _check_fingerprint(item.get("fingerprint"))
    return PreviousSecret(
        hash=item.get("hash") or "",
        fingerprint=item.get("fingerprint"),
        public_key=item.get("public_key"),
        until=read_time("previous.until", item.get("until")),
    )


def _check_hash(value: Any, name: str) -> None:
    if not isinstance(value, str) or not value.startswith("$argon2"):
        raise KeyStoreError(f"{name!r} is not an argon2 hash")


def _check_fingerprint(value: Any) -> None:
    if value is not None and not (
        isinstance(value, str) and re.fullmatch(r"[0-9a-f]{8}", value)
    ):
        raise KeyStoreError("'fingerprint' must be 8 hex digits")


def read_time(key: str, value: Any) -> datetime:
    """Read a timestamp field, accepting unquoted YAML dates and times.

    Raises:
        KeyStoreError: not a time.
    """
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, datetime):
        value = value.isoformat()
    if not isinstance(value, str):
        raise KeyStoreError(f"invalid {key!r}")
    try:
        return parse_timestamp(value)
    except ValueError as err:
        raise KeyStoreError(f"invalid {key!r}: {err}") from None
