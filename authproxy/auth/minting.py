"""Short-lived JWTs for keys and admins, never with more rights than the key."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from authproxy.errors import KeyStoreError
from authproxy.keys.record import validate_models, validate_scopes
from authproxy.keys.signing import SigningKeys, mint
from authproxy.keys.store import KeyRecord
from authproxy.times import format_duration, format_timestamp


def mint_key_token(
    keys: SigningKeys,
    record: KeyRecord,
    *,
    ttl: timedelta,
    max_ttl: timedelta,
    now: datetime,
    scopes: list[str] | None = None,
    models: list[str] | None = None,
) -> dict[str, Any]:
    """Mint a short-lived JWT for a key, with at most the key's rights.

    The token's scopes must be a subset of the key's; its model list narrows
    the key's allow-list further (both must match at request time). It dies
    with the key: revoking or disabling the key ends it.

    Raises:
        KeyStoreError: bad ttl, scopes the key lacks, bad models, or an
            unusable key (the message names the field).

    Returns:
        ``token``, ``key_id``, ``scopes``, ``models`` and ``expires_at``.
    """
    if not timedelta(0) < ttl <= max_ttl:
        raise KeyStoreError(
            f"ttl: must be more than 0 and at most {format_duration(max_ttl)}"
        )
    if not record.usable_at(now):
        raise KeyStoreError("key: disabled, revoked or expired")
    granted = list(record.scopes) if scopes is None else list(validate_scopes(scopes))
    lacking = [s for s in granted if s not in record.scopes]
    if lacking:
        raise KeyStoreError(f"scopes: the key lacks {lacking[0]!r}")
    narrowed = list(validate_models(models)) if models is not None else []
    claims: dict[str, Any] = {"sub": record.id, "typ": "key", "scopes": granted}
    if narrowed:
        claims["models"] = narrowed
    token = mint(keys, claims, now, ttl)
    return {
        "token": token,
        "key_id": record.id,
        "scopes": granted,
        "models": narrowed,
        "expires_at": format_timestamp(now + ttl),
    }


def mint_admin_token(
    keys: SigningKeys, *, actor: str, ttl: timedelta, max_ttl: timedelta, now: datetime
) -> dict[str, Any]:
    """Mint an admin JWT (scope ``admin`` only) for ``actor``.

    Raises:
        KeyStoreError: bad ttl.
    """
    if not timedelta(0) < ttl <= max_ttl:
        raise KeyStoreError(
            f"ttl: must be more than 0 and at most {format_duration(max_ttl)}"
        )
    token = mint(keys, {"sub": "admin", "typ": "admin", "actor": actor}, now, ttl)
    return {"token": token, "actor": actor, "expires_at": format_timestamp(now + ttl)}
