"""Parse the credential a request presents; pure functions, no I/O.

Accepted: ``Authorization: Bearer <token>``, ``Authorization: Basic
base64(<name or id>:<token or password>)``, ``x-api-key: <token>``, and the
``ollama`` CLI's signature, ``Authorization: <public key>:<signature>``,
recognised by its shape (``auth.signature``).
"""

from __future__ import annotations

import binascii
import re
from base64 import b64decode
from dataclasses import dataclass
from typing import Final, Literal

from multidict import CIMultiDictProxy

from authproxy.errors import AuthenticationError

Scheme = Literal["bearer", "basic", "x-api-key", "ollama-signature"]

MAX_CREDENTIAL_LENGTH: Final = 4096
X_API_KEY: Final = "x-api-key"
# RFC 9110 token68 plus what real clients put in Bearer values.
_PRINTABLE: Final = re.compile(r"[\x21-\x7e]+")
# The ollama CLI: 51 bytes of SSH wire format, then a 64-byte signature.
_SIGNATURE: Final = re.compile(r"([A-Za-z0-9+/]{68}):([A-Za-z0-9+/]{86}==)")


@dataclass(frozen=True, slots=True)
class Credential:
    """What a request presented: the scheme, the Basic username and the secret.

    For a signature, ``username`` is the public key, ``secret`` the signature,
    and the admission step adds the ``challenge`` it signs and its ``ts``.

    Warning:
        ``secret`` is a live credential: never log, store or echo it.
    """

    scheme: Scheme
    username: str | None
    secret: str
    challenge: bytes | None = None
    signed_at: int | None = None

    def __repr__(self) -> str:
        return f"Credential(scheme={self.scheme!r}, username={self.username!r})"


class CredentialError(AuthenticationError):
    """The presented credential is missing or malformed; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_credentials(headers: CIMultiDictProxy[str]) -> Credential:
    """Extract the one credential a request presents.

    ``Authorization`` wins over ``x-api-key`` when both are sent.

    Args:
        headers: the request headers.

    Raises:
        CredentialError: no credential, several ``Authorization`` or
            ``x-api-key`` headers, or a malformed value.

    Returns:
        The credential, not yet verified.
    """
    authorization = headers.getall("Authorization", [])
    api_keys = headers.getall(X_API_KEY, [])
    if len(authorization) > 1 or len(api_keys) > 1:
        raise CredentialError("multiple_credentials")
    if authorization:
        return parse_authorization(authorization[0])
    if api_keys:
        return Credential("x-api-key", None, _checked(api_keys[0].strip()))
    raise CredentialError("missing")


def parse_authorization(value: str) -> Credential:
    """Parse one ``Authorization`` header value (Bearer, Basic or a signature).

    Raises:
        CredentialError: unknown scheme or malformed value.
    """
    value = value.strip()
    # A signature has no space; "Bearer ..." and "Basic ..." skip its pattern.
    signed = None if " " in value else _SIGNATURE.fullmatch(value)
    if signed is not None:
        return Credential("ollama-signature", signed.group(1), signed.group(2))
    scheme, _, param = value.partition(" ")
    param = param.strip()
    match scheme.lower():
        case "bearer":
            return Credential("bearer", None, _checked(param))
        case "basic":
            username, password = _decode_basic(_checked(param))
            return Credential("basic", username, password)
        case _:
            raise CredentialError("unsupported_scheme")


def _checked(value: str) -> str:
    if not value or len(value) > MAX_CREDENTIAL_LENGTH:
        raise CredentialError("malformed")
    if not _PRINTABLE.fullmatch(value):
        raise CredentialError("malformed")
    return value


def _decode_basic(param: str) -> tuple[str, str]:
    try:
        raw = b64decode(param.encode("ascii"), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise CredentialError("malformed") from None
    username, colon, password = text.partition(":")
    if not colon or not username or not password:
        raise CredentialError("malformed")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise CredentialError("malformed")
    return username, password
