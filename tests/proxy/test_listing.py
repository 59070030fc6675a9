"""proxy.listing: model listings rewritten for keys with an allow-list."""

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


@pytest.mark.parametrize(
    ("path", "field", "name_key"),
    [
        ("/api/tags", "models", "name"),
        ("/api/ps", "models", "name"),
        ("/v1/models", "data", "id"),
    ],
)
async def test_listings_are_filtered(stack: Stack, path, field, name_key) -> None:
    """The three listings show only allowed models (the only rewritten responses)."""
    _, created = await stack.api(
        "POST", "/admin/keys", {"name": "dash", "models": ["llama3.2"]}
    )
    resp = await stack.proxy.get(
        path, headers={"Authorization": f"Bearer {created['token']}"}
    )
    body = await resp.read()
    assert resp.status == 200
    assert [m[name_key] for m in json.loads(body)[field]] == ["llama3.2:latest"]
    assert resp.headers["Content-Length"] == str(len(body))
    _, everything = await stack.api("POST", "/admin/keys", {"name": "all-models"})
    resp = await stack.proxy.get(
        path, headers={"Authorization": f"Bearer {everything['token']}"}
    )
    assert len(json.loads(await resp.read())[field]) >= 1
