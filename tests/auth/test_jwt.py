"""auth.jwt: a key's JWT works until its exp or its key's end; forgeries fail."""

from __future__ import annotations

import base64
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt as pyjwt
import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from authproxy.admin.app import create_admin_app
from authproxy.times import utc_now
from tests.conftest import MakeKey, Secrets
from tests.support.fake_ollama.server import FakeOllama


class MutableClock:
    """A clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class Stack:
    """A running proxy and its admin API sharing one clock."""

    proxy: TestClient[Any, Any]
    admin: TestClient[Any, Any]
    admin_token: str
    clock: MutableClock
    secrets: Secrets

    async def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        auth = {
            "Authorization": f"Bearer {token or self.admin_token}",
            # Every write says JSON, even without a body (revoke).
            **({} if method == "GET" else {"Content-Type": "application/json"}),
            **(headers or {}),
        }
        data = b"" if body is None else json.dumps(body).encode()
        resp = await self.admin.request(method, path, data=data, headers=auth)
        data = await resp.json()
        if isinstance(data, dict) and isinstance(data.get("token"), str):
            self.secrets.add(data["token"])
        return resp.status, data

    async def call(
        self, token: str, method: str = "GET", path: str = "/api/tags", body: Any = None
    ) -> int:
        resp = await self.proxy.request(
            method, path, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        await resp.read()
        return resp.status


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
async def stack(
    start_proxy, aiohttp_client, make_key: MakeKey, clock: MutableClock, secrets_seen
) -> Stack:
    ops = make_key("ops", scopes=["admin"])
    assert ops.token is not None
    proxy = await start_proxy(clock=clock)
    admin = await aiohttp_client(create_admin_app(proxy.app, clock=clock))
    return Stack(proxy, admin, ops.token, clock, secrets_seen)


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
