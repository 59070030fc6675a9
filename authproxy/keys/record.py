"""One key record: its public metadata, scopes, model allow-list and proof."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from authproxy.errors import KeyStoreError

KeyKind = Literal["token", "password", "ollama"]

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
    """A secret replaced by a rotation that keeps working until ``until``.

    A token or password key keeps the old ``hash``; an ollama key the old
    ``public_key``.
    """

    hash: str = ""
    fingerprint: str | None = None
    public_key: str | None = None
    until: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRecord:
    """One key as stored: metadata, policy, and what proves it.

    A token or password key is proved by a secret whose argon2id ``hash`` is
    kept; an ollama key by a signature of its ed25519 ``public_key`` (the
    ``ollama`` CLI's ``id_ed25519.pub``), whose ``fingerprint`` is then the
    ``SHA256:...`` form.
    """

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
    hash: str = ""
    fingerprint: str | None = None
    public_key: str | None = None
    previous: tuple[PreviousSecret, ...] = ()

    def usable_at(self, now: datetime) -> bool:
        """Tell whether the key may authenticate at ``now``."""
        if self.disabled:
            return False
        return self.expires_at is None or now < self.expires_at

    def hashes_at(self, now: datetime) -> list[tuple[str, str | None]]:
        """Return ``(hash, fingerprint)`` of every secret valid at ``now``."""
        if not self.hash:
            return []
        valid = [(self.hash, self.fingerprint)]
        valid += [
            (p.hash, p.fingerprint) for p in self.previous if p.hash and now < p.until
        ]
        return valid

    def public_keys_at(self, now: datetime) -> list[str]:
        """Return every ed25519 public key (an ollama key's) valid at ``now``."""
        if self.public_key is None:
            return []
        valid = [self.public_key]
        valid += [p.public_key for p in self.previous if p.public_key and now < p.until]
        return valid


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
