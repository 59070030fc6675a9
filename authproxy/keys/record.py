"""One key record: its public metadata, scopes, model allow-list and secret hashes."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final, Literal

from authproxy.errors import KeyStoreError
from authproxy.times import format_timestamp, parse_timestamp

KeyKind = Literal["token", "password"]

ID_RE: Final = re.compile(r"[a-z2-7]{12}")
TOKEN_RE: Final = re.compile(r"ap_([a-z2-7]{12})_([A-Za-z0-9_-]{43})")
NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MODEL_PATTERN_RE: Final = re.compile(r"[A-Za-z0-9._:/*?\[\]!@+-]{1,200}")
ALL_SCOPES: Final = (
    "inference",
    "embeddings",
    "models:read",
    "models:manage",
    "cloud",
    "admin",
)
DEFAULT_SCOPES: Final = ("inference", "embeddings", "models:read")
FINGERPRINT_LENGTH: Final = 8


def fingerprint(secret: str) -> str:
    """Return 32 bits of SHA-256 of a generated token secret.

    It lets the verifier pick the right hash (during a rotation grace) and
    reject a wrong secret without argon2. Only ever used for 256-bit random
    secrets, never for chosen passwords, which it would help to guess.
    """
    return hashlib.sha256(secret.encode()).hexdigest()[:FINGERPRINT_LENGTH]


# 10**15: far above any real quota, and exact as a float (the token bucket's
# arithmetic), where 10**400 would raise OverflowError on every request.
MAX_LIMIT: Final = 10**15
LIMIT_FIELDS: Final = (
    "requests_per_minute",
    "concurrent",
    "tokens_per_day",
    "tokens_per_month",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyLimits:
    """Per-key limits; ``None`` means unlimited."""

    requests_per_minute: int | None = None
    concurrent: int | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None

    def __bool__(self) -> bool:
        return any(getattr(self, f) is not None for f in LIMIT_FIELDS)

    def as_dict(self) -> dict[str, int]:
        """Return the set limits only."""
        return {
            f: getattr(self, f) for f in LIMIT_FIELDS if getattr(self, f) is not None
        }


def validate_limits(value: Any) -> KeyLimits:
    """Check a limits mapping; 0 or null means unlimited.

    Raises:
        KeyStoreError: unknown fields, or values that are not integers from
            0 to ``MAX_LIMIT`` (floats and booleans included).
    """
    if value is None:
        return KeyLimits()
    if not isinstance(value, dict):
        raise KeyStoreError("limits: expected a mapping")
    values: dict[str, int | None] = {}
    for name, limit in value.items():
        if name not in LIMIT_FIELDS:
            raise KeyStoreError(f"limits.{name}: unknown limit")
        if limit is None:
            values[name] = None
        # Type first: false == 0 and 0.0 == 0, but neither is a limit.
        elif (
            isinstance(limit, int)
            and not isinstance(limit, bool)
            and 0 <= limit <= MAX_LIMIT
        ):
            values[name] = limit or None
        else:
            raise KeyStoreError(
                f"limits.{name}: expected a positive integer or 0, at most {MAX_LIMIT}"
            )
    return KeyLimits(**values)


@dataclass(frozen=True, slots=True, kw_only=True)
class PreviousSecret:
    """A secret replaced by a rotation that keeps working until ``until``."""

    hash: str
    fingerprint: str | None = None
    until: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRecord:
    """One key as stored: metadata, policy, and argon2id hashes of its secrets."""

    id: str
    name: str
    kind: KeyKind = "token"
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    models: tuple[str, ...] = ()
    limits: KeyLimits = KeyLimits()
    note: str | None = None
    created_at: datetime
    expires_at: datetime | None = None
    disabled: bool = False
    revoked_at: datetime | None = None
    tokens_valid_after: datetime | None = None
    hash: str
    fingerprint: str | None = None
    previous: tuple[PreviousSecret, ...] = ()

    def usable_at(self, now: datetime) -> bool:
        """Tell whether the key may authenticate at ``now``."""
        if self.disabled:
            return False
        return self.expires_at is None or now < self.expires_at

    def hashes_at(self, now: datetime) -> list[tuple[str, str | None]]:
        """Return ``(hash, fingerprint)`` of every secret valid at ``now``."""
        valid = [(self.hash, self.fingerprint)]
        valid += [(p.hash, p.fingerprint) for p in self.previous if now < p.until]
        return valid

    def public(self) -> dict[str, Any]:
        """Return the record without hashes or fingerprints, for listings."""
        data = record_to_data(self)
        for secret_field in ("hash", "fingerprint"):
            del data[secret_field]
        data["previous"] = [{"until": p["until"]} for p in data["previous"]]
        return data


def validate_name(name: str) -> str:
    """Check a key name.

    Raises:
        KeyStoreError: the name is empty, too long or has unsafe characters.
    """
    if not NAME_RE.fullmatch(name) or TOKEN_RE.fullmatch(name):
        raise KeyStoreError(
            f"invalid key name {name!r}: use 1-64 of A-Z a-z 0-9 . _ @ -, "
            "starting with a letter or digit"
        )
    return name


def validate_scopes(scopes: Any) -> tuple[str, ...]:
    """Check a list of scope names.

    Raises:
        KeyStoreError: not a list of known scopes.
    """
    if not isinstance(scopes, list | tuple) or not all(
        isinstance(s, str) for s in scopes
    ):
        raise KeyStoreError("scopes: expected a list of scope names")
    for scope in scopes:
        if scope not in ALL_SCOPES:
            raise KeyStoreError(
                f"scopes: unknown scope {scope!r} (known: {', '.join(ALL_SCOPES)})"
            )
    return tuple(dict.fromkeys(scopes))


def validate_models(models: Any) -> tuple[str, ...]:
    """Check a list of model name patterns (globs).

    Raises:
        KeyStoreError: not a list of sane patterns.
    """
    if not isinstance(models, list | tuple) or not all(
        isinstance(m, str) and MODEL_PATTERN_RE.fullmatch(m) for m in models
    ):
        raise KeyStoreError("models: expected a list of model names or glob patterns")
    return tuple(dict.fromkeys(models))


def record_to_data(record: KeyRecord) -> dict[str, Any]:
    """Return the record as plain data for the YAML store."""
    data: dict[str, Any] = {}
    for fld in dataclasses.fields(record):
        data[fld.name] = _plain(getattr(record, fld.name))
    return data


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, KeyLimits):
        return value.as_dict()
    if isinstance(value, PreviousSecret):
        return {k: _plain(getattr(value, k)) for k in ("hash", "fingerprint", "until")}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


_REQUIRED: Final = ("id", "name", "hash", "created_at")
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
    for key in _REQUIRED:
        if not isinstance(item.get(key), str | date):
            raise KeyStoreError(f"missing or invalid {key!r}")
    values = dict(item)
    for key in _TIMES:
        if values.get(key) is not None:
            values[key] = read_time(key, values[key])
    if not ID_RE.fullmatch(values["id"]):
        raise KeyStoreError("invalid 'id'")
    validate_name(values["name"])
    _check_hash(values["hash"], "hash")
    _check_flags(values)
    if "scopes" in values:
        values["scopes"] = validate_scopes(values["scopes"])
    if "models" in values:
        values["models"] = validate_models(values["models"] or [])
    _check_fingerprint(values.get("fingerprint"))
    values["limits"] = validate_limits(values.get("limits"))
    values["previous"] = tuple(_previous(p) for p in values.get("previous") or [])
    return KeyRecord(**values)


def _check_flags(values: dict[str, Any]) -> None:
    if values.get("kind", "token") not in {"token", "password"}:
        raise KeyStoreError("'kind' must be token or password")
    if not isinstance(values.get("disabled", False), bool):
        raise KeyStoreError("'disabled' must be true or false")
    if not isinstance(values.get("note"), str | None):
        raise KeyStoreError("'note' must be text")


def _previous(item: Any) -> PreviousSecret:
    if not isinstance(item, dict) or set(item) - {"hash", "fingerprint", "until"}:
        raise KeyStoreError("'previous' entries need hash, fingerprint and until")
    _check_hash(item.get("hash"), "previous.hash")
    _check_fingerprint(item.get("fingerprint"))
    return PreviousSecret(
        hash=item["hash"],
        fingerprint=item.get("fingerprint"),
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
