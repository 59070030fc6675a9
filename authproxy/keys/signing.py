"""Short-lived JWTs: the HS256 signing keys (rotatable by ``kid``), minting, checking.

The algorithm is fixed here and never taken from a token (RFC 8725 §2.1):
``alg: none`` and RS/HS confusion are rejected by construction.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import jwt
import yaml

from authproxy.config.model import JWTConfig
from authproxy.errors import KeyStoreError
from authproxy.files import store_lock, write_file_atomically
from authproxy.times import format_timestamp, parse_timestamp

ALGORITHM: Final = "HS256"
ISSUER: Final = "authproxy"
SECRET_BYTES: Final = 64
KEEP_PREVIOUS: Final = 3


class TokenError(ValueError):
    """A JWT that is malformed, unsigned, forged, expired or of an unknown kid."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One HMAC key; the first of a set signs, the others only verify."""

    kid: str
    secret: bytes
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """The current signing key plus previous ones still accepted."""

    keys: tuple[SigningKey, ...]

    @property
    def current(self) -> SigningKey:
        """The key new tokens are signed with."""
        return self.keys[0]

    def find(self, kid: str) -> SigningKey | None:
        """Return the key with this ``kid``."""
        return next((k for k in self.keys if k.kid == kid), None)


def _kid(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()[:12]


def load_signing_keys(
    config: JWTConfig, path: Path, environ: dict[str, str] | None = None
) -> SigningKeys:
    """Load keys from the env var named in ``jwt.key_env``, else from ``path``.

    The file is created (mode 0600) with one fresh key on first use.

    Raises:
        KeyStoreError: the env var is missing or weak, or the file is unusable
            (missing in a directory where it cannot be created, say a read-only
            Secret mount; the message names the settings that fix it).
    """
    env = os.environ if environ is None else environ
    if config.key_env:
        keys = [_env_key(env, config.key_env)]
        if config.previous_key_env and env.get(config.previous_key_env):
            keys.append(_env_key(env, config.previous_key_env))
        return SigningKeys(tuple(keys))
    if not path.exists():
        try:
            with store_lock(path):
                if not path.exists():
                    _write(path, [_new_key()])
        except KeyStoreError as err:
            raise KeyStoreError(
                f"{path}: no JWT signing key file, and none can be made there "
                f"({err}); set jwt.key_file to a file from a Secret or on a "
                "writable volume, or jwt.key_env (see docs/deployment.md)"
            ) from None
    return SigningKeys(tuple(_read(path)))


def rotate_signing_key(config: JWTConfig, path: Path, now: datetime) -> SigningKeys:
    """Put a new signing key first; keep the last few to verify older tokens.

    Raises:
        KeyStoreError: keys come from an environment variable, or I/O failed.
    """
    if config.key_env:
        raise KeyStoreError(
            "jwt.key_env is set: rotate by moving the old secret to "
            "jwt.previous_key_env and setting a new one"
        )
    with store_lock(path):
        old = _read(path) if path.exists() else []
        keys = [_new_key(now), *old[:KEEP_PREVIOUS]]
        _write(path, keys)
    return SigningKeys(tuple(keys))


def mint(
    keys: SigningKeys, claims: dict[str, Any], now: datetime, ttl: timedelta
) -> str:
    """Sign a token with the current key: ``iss``, ``iat``, ``exp``, ``jti`` added."""
    key = keys.current
    payload = {
        **claims,
        "iss": ISSUER,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(
        payload, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid}
    )


def decode(keys: SigningKeys, token: str, now: datetime) -> dict[str, Any]:
    """Verify a token's signature, issuer and expiry against ``now``.

    Raises:
        TokenError: anything wrong with the token; the message is safe to log.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError("malformed_jwt") from None
    if header.get("alg") != ALGORITHM:
        raise TokenError("jwt_algorithm")
    key = keys.find(str(header.get("kid", "")))
    if key is None:
        raise TokenError("jwt_unknown_kid")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={
                "require": ["exp", "iat", "sub", "iss"],
                "verify_exp": False,  # checked below against the injectable clock
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError:
        raise TokenError("jwt_invalid") from None
    if not isinstance(claims.get("exp"), int) or claims["exp"] <= now.timestamp():
        raise TokenError("jwt_expired")
    return claims


def looks_like_jwt(token: str) -> bool:
    """Tell whether a Bearer value is shaped like a JWS (three base64url parts)."""
    return token.startswith("eyJ") and token.count(".") == 2


def _new_key(now: datetime | None = None) -> SigningKey:
    secret = secrets.token_bytes(SECRET_BYTES)
    return SigningKey(_kid(secret), secret, now)


def _env_key(env: os._Environ[str] | dict[str, str], name: str) -> SigningKey:
    value = env.get(name)
    if not value or len(value) < 32:
        raise KeyStoreError(
            f"jwt: environment variable {name} must hold >= 32 characters"
        )
    secret = value.encode()
    return SigningKey(_kid(secret), secret)


def _read(path: Path) -> list[SigningKey]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        keys = [
            SigningKey(
                str(item["kid"]),
                base64.urlsafe_b64decode(item["secret"]),
                parse_timestamp(item["created_at"]) if item.get("created_at") else None,
            )
            for item in data["keys"]
        ]
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        raise KeyStoreError(f"{path}: not a valid JWT signing key file") from None
    if not keys:
        raise KeyStoreError(f"{path}: holds no signing keys")
    return keys


def _write(path: Path, keys: list[SigningKey]) -> None:
    data = {
        "keys": [
            {
                "kid": k.kid,
                "secret": base64.urlsafe_b64encode(k.secret).decode(),
                "created_at": format_timestamp(k.created_at) if k.created_at else None,
            }
            for k in keys
        ]
    }
    header = "# authproxy JWT signing keys (HS256). The first signs; keep it secret.\n"
    write_file_atomically(
        path, (header + yaml.safe_dump(data, sort_keys=False)).encode()
    )
