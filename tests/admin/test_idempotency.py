"""admin.idempotency: a retried action with the same key gets the same reply."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from authproxy.admin.app import create_admin_app
from authproxy.keys.store import read_store
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


async def test_rotate_is_idempotent(stack: Stack, key, keys_path: Path) -> None:
    """A retry with the same Idempotency-Key returns the same token, rotating once."""
    headers = {"Idempotency-Key": "retry-1"}
    first = await stack.api(
        "POST", "/admin/keys/alice/rotate", {"grace": "1h"}, headers=headers
    )
    second = await stack.api(
        "POST", "/admin/keys/alice/rotate", {"grace": "1h"}, headers=headers
    )
    assert first == second
    assert len(read_store(keys_path).by_name["alice"].previous) == 1
    status, data = await stack.api(
        "POST", "/admin/keys/alice/rotate", {"grace": "2h"}, headers=headers
    )
    assert (status, data) == (
        409,
        {"error": "Idempotency-Key reused with another request"},
    )
    third = await stack.api(
        "POST",
        "/admin/keys/alice/rotate",
        {"grace": "1h"},
        headers={"Idempotency-Key": "retry-2"},
    )
    assert third[1]["token"] != first[1]["token"]


async def test_idempotency_key_length_is_bounded(stack: Stack) -> None:
    """An Idempotency-Key past the documented 200 characters is a 400, not stored."""
    resp = await stack.admin.post(
        "/admin/keys",
        json={"name": "long-idem"},
        headers={
            "Authorization": f"Bearer {stack.admin_token}",
            "Idempotency-Key": "k" * 201,
        },
    )
    assert resp.status == HTTPStatus.BAD_REQUEST
    assert await resp.json() == {"error": "Idempotency-Key: at most 200 characters"}
    status, _ = await stack.api("GET", "/admin/keys/long-idem")
    assert status == HTTPStatus.NOT_FOUND
