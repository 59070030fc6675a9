"""Turn a signed short-lived token (JWT) into the principal it names."""

from __future__ import annotations

from datetime import datetime

from authproxy.auth.principal import Principal, VerifyFailedError, check_usable
from authproxy.keys.signing import SigningKeys, TokenError, decode
from authproxy.keys.store import KeyTable


def principal_from_jwt(
    keys: SigningKeys, table: KeyTable, token: str, now: datetime
) -> Principal:
    """Verify a JWT and return its principal, narrowed by the token's claims.

    Key tokens are checked against their live record, so disabling, expiring
    or revoking the key (``tokens_valid_after``) ends its tokens at once.

    Raises:
        VerifyFailedError: bad signature or claims, unknown, unusable or
            revoked key.
    """
    try:
        claims = decode(keys, token, now)
    except TokenError as err:
        raise VerifyFailedError(str(err)) from None
    if claims.get("typ") == "admin":
        actor = str(claims.get("actor") or "admin")
        return Principal("admin", actor, "jwt", frozenset({"admin"}))
    record = table.by_id.get(str(claims["sub"]))
    if claims.get("typ") != "key" or record is None:
        raise VerifyFailedError("jwt_unknown_key")
    check_usable(record, now)
    not_before = record.tokens_valid_after
    if not_before is not None and claims["iat"] < not_before.timestamp():
        raise VerifyFailedError("jwt_revoked", record.id)
    scopes = claims.get("scopes")
    models = claims.get("models")
    return Principal.of(
        record,
        "jwt",
        frozenset(scopes) if isinstance(scopes, list) else None,
        tuple(str(m) for m in models) if isinstance(models, list) else (),
    )
