"""admin.auth: admin credentials, 100-continue, the brute-force limiter."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from authproxy.admin.app import create_admin_app
from authproxy.keys.store import format_token
from authproxy.times import utc_now
from authproxy.web.appkeys import VERIFIER_KEY
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


async def test_admin_credentials(stack: Stack, key, audit_path: Path) -> None:
    """No or bad credential: 401; a key without the admin scope: 403; all logged."""
    resp = await stack.admin.get("/admin/keys")
    assert resp.status == HTTPStatus.UNAUTHORIZED
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="authproxy-admin"'
    status, data = await stack.api(
        "GET", "/admin/keys", token="ap_aaaaaaaaaaaa_" + "x" * 43
    )
    assert (status, data) == (401, {"error": "unauthorized"})
    limited = await stack.api("POST", "/admin/keys", {"name": "plain"})
    status, data = await stack.api("GET", "/admin/keys", token=limited[1]["token"])
    assert (status, data) == (403, {"error": "this key lacks the 'admin' scope"})
    trail = [
        json.loads(line)
        for line in audit_path.with_name("admin.jsonl").read_text().splitlines()
    ]
    assert [(r["action"], r["result"], r["detail"].get("reason")) for r in trail] == [
        ("auth", "denied", "missing"),
        ("auth", "denied", "unknown_key"),
        ("create", "ok", None),
        ("auth", "denied", "no_admin_scope"),
    ]


async def test_admin_continue_only_after_authentication(stack: Stack) -> None:
    """The admin API never invites an unauthenticated upload; a valid admin gets 100."""
    body = b'{"name":"via-expect"}'

    async def exchange(token: str | None) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.admin.port)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        writer.write(
            f"POST /admin/keys HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
            "Content-Type: application/json\r\nExpect: 100-continue\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        if first.startswith(b"HTTP/1.1 100"):
            writer.write(body)
            await writer.drain()
            first += await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return first

    refused = await exchange(None)
    assert refused.startswith(b"HTTP/1.1 401 ")
    accepted = await exchange(stack.admin_token)
    assert accepted.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 ")


WRONG = {"Authorization": f"Bearer {format_token('aaaaaaaaaaaa', 'x' * 43)}"}


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_admin_port_blocks_before_argon2(
    start_proxy, aiohttp_client, make_key: MakeKey
) -> None:
    """Past auth_failures on the admin port: 429; an uncached key costs no argon2."""
    ops = make_key("ops", scopes=["admin"])
    spare = make_key("spare", scopes=["admin"])
    proxy = await start_proxy({"limits.auth_failures": 3, "limits.auth_cooldown": "1h"})
    admin = await aiohttp_client(create_admin_app(proxy.app))
    stats = proxy.app[VERIFIER_KEY].stats
    assert (await admin.get("/admin/keys", headers=bearer(ops.token))).status == 200
    for _ in range(3):
        assert (await admin.get("/admin/keys", headers=WRONG)).status == 401
    resp = await admin.get("/admin/keys", headers=bearer(spare.token))
    assert resp.status == HTTPStatus.TOO_MANY_REQUESTS
    assert await resp.json() == {
        "error": "too many failed authentications; retry later"
    }
    assert 3590 <= int(resp.headers["Retry-After"]) <= 3600
    assert stats.argon2_verifications == 1  # ops, once; spare never reached argon2
    # The admin key verified before the block is cached: it proves itself.
    assert (await admin.get("/admin/keys", headers=bearer(ops.token))).status == 200


async def test_both_listeners_share_one_limiter(
    start_proxy, aiohttp_client, key
) -> None:
    """Failures on the proxy port and the admin port count together."""
    proxy = await start_proxy({"limits.auth_failures": 3})
    admin = await aiohttp_client(create_admin_app(proxy.app))
    for _ in range(2):
        assert (await proxy.get("/api/tags", headers=WRONG)).status == 401
    assert (await admin.get("/admin/keys", headers=WRONG)).status == 401
    assert (await admin.get("/admin/keys", headers=WRONG)).status == 429
    resp = await proxy.get("/api/tags", headers=bearer(key.token))
    assert resp.status == HTTPStatus.TOO_MANY_REQUESTS
