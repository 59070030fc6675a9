"""auth.jwt: a key's JWT works until its exp or its key's end; forgeries fail."""

from __future__ import annotations

import base64
import hmac
import json
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.admin import Stack
from tests.support.fake_ollama.server import FakeOllama


async def test_jwt_expires(stack: Stack) -> None:
    """A JWT stops working at its exp (injectable clock)."""
    _, minted = await stack.api("POST", "/admin/keys/alice/tokens", {"ttl": "10m"})
    assert await stack.call(minted["token"]) == 200
    stack.clock.advance(minutes=11)
    assert await stack.call(minted["token"]) == 401


async def test_jwt_dies_with_its_key(stack: Stack) -> None:
    """Disabling (even if re-enabled) or revoking a key ends its JWTs."""
    _, minted = await stack.api("POST", "/admin/keys/alice/tokens", {"ttl": "1h"})
    assert await stack.call(minted["token"]) == 200
    await stack.api("PATCH", "/admin/keys/alice", {"disabled": True})
    assert await stack.call(minted["token"]) == 401
    stack.clock.advance(seconds=2)
    await stack.api("PATCH", "/admin/keys/alice", {"disabled": False})
    assert await stack.call(minted["token"]) == 401
    _, fresh = await stack.api("POST", "/admin/keys/alice/tokens", {"ttl": "1h"})
    assert await stack.call(fresh["token"]) == 200
    await stack.api("POST", "/admin/keys/alice/revoke")
    assert await stack.call(fresh["token"]) == 401


def _forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes) -> str:

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join(
        [
            b64(json.dumps(header).encode()),
            b64(json.dumps(payload).encode()),
            b64(signature),
        ]
    )


async def test_forged_jwts_are_rejected(stack: Stack, key, fake: FakeOllama) -> None:
    """alg none, a wrong key, RS256 and HS/RS confusion all get 401."""

    _, minted = await stack.api("POST", "/admin/keys/alice/tokens", {"ttl": "1h"})
    header = pyjwt.get_unverified_header(minted["token"])
    claims = pyjwt.decode(minted["token"], options={"verify_signature": False})
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = {
        "alg-none": _forge(
            {"alg": "none", "typ": "JWT", "kid": header["kid"]}, claims, b""
        ),
        "wrong-key": pyjwt.encode(
            claims, "x" * 64, algorithm="HS256", headers={"kid": header["kid"]}
        ),
        "rs256": pyjwt.encode(
            claims, private, algorithm="RS256", headers={"kid": header["kid"]}
        ),
        "hs-with-public-key": _forge(
            {"alg": "HS256", "typ": "JWT", "kid": header["kid"]},
            claims,
            hmac.new(public_pem, b"x", "sha256").digest(),
        ),
        "unknown-kid": pyjwt.encode(
            claims, "y" * 64, algorithm="HS256", headers={"kid": "nope"}
        ),
    }
    fake.received.clear()
    for name, token in forged.items():
        assert await stack.call(token) == 401, name
    assert fake.received == []
