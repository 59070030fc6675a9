"""web.app: the proxy application as create_app builds it."""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

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


async def test_admin_api_is_not_on_the_proxy_port(
    stack: Stack, key, fake: FakeOllama
) -> None:
    """/admin/... on the proxy port is just another path forwarded to Ollama."""
    resp = await stack.proxy.get(
        "/admin/keys", headers={"Authorization": f"Bearer {key.token}"}
    )
    assert resp.status == HTTPStatus.NOT_FOUND
    assert await resp.read() == b"404 page not found"
    assert fake.last.path_qs == "/admin/keys"


async def test_proxy_narrows_an_existing_audit_file(
    start_proxy, audit_path: Path
) -> None:
    """A proxy started on a pre-existing 0644 audit file leaves it 0600."""
    audit_path.parent.mkdir(parents=True)
    audit_path.write_bytes(b"")
    audit_path.chmod(0o644)
    await start_proxy()
    assert stat.S_IMODE(audit_path.stat().st_mode) == 0o600
