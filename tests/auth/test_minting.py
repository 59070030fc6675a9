"""auth.minting: a key's JWTs never carry more rights than the key."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from authproxy.admin.app import create_admin_app
from authproxy.times import utc_now
from tests.conftest import MakeKey, Secrets

CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}


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


async def test_key_jwt_works_with_at_most_the_keys_rights(stack: Stack, key) -> None:
    """A minted JWT authenticates on the proxy, narrowed to its scopes and models."""
    status, minted = await stack.api(
        "POST",
        "/admin/keys/alice/tokens",
        {"ttl": "15m", "scopes": ["inference"], "models": ["llama3.2"]},
    )
    assert status == 201
    jwt_token = minted["token"]
    assert minted["key_id"] == key.record.id
    assert await stack.call(jwt_token, "POST", "/api/chat", CHAT) == 200
    assert (
        await stack.call(jwt_token, "POST", "/api/chat", {**CHAT, "model": "qwen3"})
        == 403
    )
    assert await stack.call(jwt_token) == 403  # models:read not granted
    _, plain = await stack.api("POST", "/admin/keys", {"name": "plain"})
    status, data = await stack.api(
        "POST", f"/admin/keys/{plain['id']}/tokens", {"scopes": ["admin"]}
    )
    assert (status, data["error"]) == (400, "scopes: the key lacks 'admin'")
