"""cli.tokens: admin-token mints a JWT for the admin API only."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from authproxy.admin.app import create_admin_app
from authproxy.cli.main import main
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


async def test_admin_jwt(
    stack: Stack, config_file: Path, capsys, fake: FakeOllama
) -> None:
    """`authproxy admin-token` mints a JWT for the admin API, useless on the proxy."""

    code = await asyncio.to_thread(
        main,
        [
            "admin-token",
            "--ttl",
            "5m",
            "--actor",
            "carol",
            "--json",
            "--config",
            str(config_file),
        ],
    )
    minted = json.loads(capsys.readouterr().out)
    stack.secrets.add(minted["token"])
    assert (code, minted["actor"]) == (0, "carol")
    status, _ = await stack.api("GET", "/admin/keys", token=minted["token"])
    assert status == 200
    assert await stack.call(minted["token"]) == 403
    stack.clock.advance(minutes=6)
    status, _ = await stack.api("GET", "/admin/keys", token=minted["token"])
    assert status == 401
