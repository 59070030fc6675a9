"""admin.auth: admin credentials, 100-continue, the brute-force limiter."""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from pathlib import Path

from authproxy.admin.app import create_admin_app
from authproxy.web.appkeys import VERIFIER_KEY
from tests.support.admin import Stack
from tests.support.auth import UNKNOWN_TOKEN, bearer_auth
from tests.support.harness import MakeKey
from tests.support.rawhttp import build_request, connect, header_lines


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
        auth = header_lines(bearer_auth(token)) if token else []
        head = build_request(
            *auth,
            "Content-Type: application/json",
            "Expect: 100-continue",
            f"Content-Length: {len(body)}",
            method="POST",
            target="/admin/keys",
            host="127.0.0.1",
        )
        async with connect(stack.admin.port) as (reader, writer):
            writer.write(head)
            await writer.drain()
            first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            if first.startswith(b"HTTP/1.1 100"):
                writer.write(body)
                await writer.drain()
                first += await asyncio.wait_for(reader.read(), 5)
        return first

    refused = await exchange(None)
    assert refused.startswith(b"HTTP/1.1 401 ")
    accepted = await exchange(stack.admin_token)
    assert accepted.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 ")


WRONG = bearer_auth(UNKNOWN_TOKEN)


async def test_admin_port_blocks_before_argon2(
    start_proxy, aiohttp_client, make_key: MakeKey
) -> None:
    """Past auth_failures on the admin port: 429; an uncached key costs no argon2."""
    ops = make_key("ops", scopes=["admin"])
    spare = make_key("spare", scopes=["admin"])
    proxy = await start_proxy({"limits.auth_failures": 3, "limits.auth_cooldown": "1h"})
    admin = await aiohttp_client(create_admin_app(proxy.app))
    stats = proxy.app[VERIFIER_KEY].stats
    assert (
        await admin.get("/admin/keys", headers=bearer_auth(ops.token))
    ).status == 200
    for _ in range(3):
        assert (await admin.get("/admin/keys", headers=WRONG)).status == 401
    resp = await admin.get("/admin/keys", headers=bearer_auth(spare.token))
    assert resp.status == HTTPStatus.TOO_MANY_REQUESTS
    assert await resp.json() == {
        "error": "too many failed authentications; retry later"
    }
    assert 3590 <= int(resp.headers["Retry-After"]) <= 3600
    assert stats.argon2_verifications == 1  # ops, once; spare never reached argon2
    # The admin key verified before the block is cached: it proves itself.
    assert (
        await admin.get("/admin/keys", headers=bearer_auth(ops.token))
    ).status == 200


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
    resp = await proxy.get("/api/tags", headers=bearer_auth(key.token))
    assert resp.status == HTTPStatus.TOO_MANY_REQUESTS
