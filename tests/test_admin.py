"""The admin API against the real apps: key life-cycle, scopes, allow-lists, trail."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from openapi_spec_validator import validate

from authproxy.admin.app import create_admin_app
from authproxy.admin.openapi import OPENAPI
from authproxy.cli.main import main
from authproxy.config.load import load_config
from authproxy.keys.store import read_store
from authproxy.metering.chain import verify_files
from authproxy.times import utc_now
from authproxy.web.app import create_app
from authproxy.web.appkeys import WATCHER_KEY
from tests.conftest import MakeKey, Secrets
from tests.support.fake_ollama.server import FakeOllama

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


# --- key life-cycle ----------------------------------------------------------


async def test_create_show_list_update(stack: Stack, fake: FakeOllama) -> None:
    """A key created over the API works at once; listings never show secrets."""
    status, created = await stack.api(
        "POST",
        "/admin/keys",
        {
            "name": "team-a",
            "scopes": ["embeddings"],
            "models": ["nomic-embed-text"],
            "note": "embeddings only",
            "expires_at": "30d",
        },
    )
    assert status == HTTPStatus.CREATED
    assert created["scopes"] == ["embeddings"]
    assert created["status"] == "active"
    assert "hash" not in created
    assert "fingerprint" not in created
    embed = {"model": "nomic-embed-text", "input": "x"}
    assert await stack.call(created["token"], "POST", "/api/embed", embed) == 200
    status, shown = await stack.api("GET", "/admin/keys/team-a")
    assert (status, shown["id"]) == (200, created["id"])
    status, listing = await stack.api("GET", "/admin/keys")
    assert status == 200
    assert [k["name"] for k in listing["keys"]] == ["alice", "ops", "team-a"]
    assert "argon2" not in json.dumps(listing)
    status, changed = await stack.api(
        "PATCH",
        f"/admin/keys/{created['id']}",
        {"scopes": ["models:read"], "note": None},
    )
    assert (status, changed["scopes"], changed["note"]) == (200, ["models:read"], None)
    assert await stack.call(created["token"], "POST", "/api/embed", embed) == 403
    assert await stack.call(created["token"]) == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("POST", "/admin/keys", {}, 400, "name: required, a string"),
        (
            "POST",
            "/admin/keys",
            {"name": "x", "scopes": ["root"]},
            400,
            "scopes: unknown scope 'root'",
        ),
        (
            "POST",
            "/admin/keys",
            {"name": "x", "models": [1]},
            400,
            "models: expected a list of strings",
        ),
        (
            "POST",
            "/admin/keys",
            {"name": "x", "expires_at": "2001-01-01T00:00:00Z"},
            400,
            "expires_at: must be in the future",
        ),
        (
            "POST",
            "/admin/keys",
            {"name": "x", "colour": "red"},
            400,
            "colour: unknown field",
        ),
        (
            "POST",
            "/admin/keys",
            {"name": "bad name"},
            400,
            "invalid key name 'bad name'",
        ),
        (
            "POST",
            "/admin/keys",
            {"name": "alice"},
            400,
            "a key named 'alice' already exists",
        ),
        ("POST", "/admin/keys", [1], 400, "body: expected a JSON object"),
        (
            "PATCH",
            "/admin/keys/alice",
            {"hash": "x"},
            400,
            "hash: not a field that can be changed",
        ),
        ("PATCH", "/admin/keys/alice", {}, 400, "body: give at least one of"),
        (
            "PATCH",
            "/admin/keys/alice",
            {"disabled": "yes"},
            400,
            "disabled: expected true or false",
        ),
        (
            "POST",
            "/admin/keys/alice/rotate",
            {"grace": "soon"},
            400,
            "grace: invalid duration 'soon'",
        ),
        (
            "POST",
            "/admin/keys/alice/tokens",
            {"ttl": "48h"},
            400,
            "ttl: must be more than 0 and at most",
        ),
        ("GET", "/admin/usage?by=colour", None, 400, "by: unknown dimension 'colour'"),
        ("GET", "/admin/keys/nobody", None, 404, "key not found"),
        ("POST", "/admin/keys/nobody/revoke", None, 404, "key not found"),
    ],
    ids=lambda v: (
        v if isinstance(v, str) and len(v) < 24 and v.isidentifier() else None
    ),
)
async def test_bad_input_names_the_field(
    stack: Stack, method, path, body, status, error
) -> None:
    """Bad input is a 400 naming the field; an unknown id is a 404."""
    got, data = await stack.api(method, path, body)
    assert got == status
    assert error in data["error"]


async def test_invalid_json_body(stack: Stack) -> None:
    """A body that is not JSON is a 400."""
    resp = await stack.admin.post(
        "/admin/keys",
        data=b"{nope",
        headers={
            "Authorization": f"Bearer {stack.admin_token}",
            "Content-Type": "application/json",
        },
    )
    assert resp.status == HTTPStatus.BAD_REQUEST
    assert await resp.json() == {"error": "body: not valid JSON"}


ROTATE, TOKENS, KEYS, ALICE = (
    "/admin/keys/alice/rotate",
    "/admin/keys/alice/tokens",
    "/admin/keys",
    "/admin/keys/alice",
)
TOO_LONG = "is too long (at most 36500d, 100 years)"
BAD_LIMIT = "expected a positive integer or 0, at most 1000000000000000"
NOT_A_TIME = "expected RFC 3339 (2026-12-31T00:00:00Z) or a duration"


def _limit(name: str, value: str) -> bytes:
    return f'{{"name":"x","limits":{{"{name}":{value}}}}}'.encode()


# (id, method, path, raw JSON body or None, the start of the error message)
OUT_OF_RANGE = [
    ("grace-inf", "POST", ROTATE, b'{"grace":"inf"}', "grace: invalid duration"),
    ("grace-nan", "POST", ROTATE, b'{"grace":"nan"}', "grace: invalid duration"),
    ("grace-1e400s", "POST", ROTATE, b'{"grace":"1e400"}', "grace: invalid duration"),
    ("grace-days", "POST", ROTATE, b'{"grace":"9999999999d"}', "grace: duration"),
    ("grace-digits", "POST", ROTATE, b'{"grace":"' + b"9" * 500 + b'"}', "grace:"),
    ("grace-1e20", "POST", ROTATE, b'{"grace":1e20}', f"grace: duration {TOO_LONG}"),
    ("grace-1e400", "POST", ROTATE, b'{"grace":1e400}', f"grace: duration {TOO_LONG}"),
    ("grace-bigint", "POST", ROTATE, b'{"grace":1' + b"0" * 400 + b"}", "grace:"),
    ("grace-neg", "POST", ROTATE, b'{"grace":-1}', "grace: negative duration"),
    ("grace-negstr", "POST", ROTATE, b'{"grace":"-1"}', "grace: negative duration"),
    ("grace-NaN", "POST", ROTATE, b'{"grace":NaN}', "body: NaN is not valid JSON"),
    ("grace-Inf", "POST", ROTATE, b'{"grace":Infinity}', "body: Infinity is not"),
    ("grace--Inf", "POST", ROTATE, b'{"grace":-Infinity}', "body: -Infinity is not"),
    ("ttl-inf", "POST", TOKENS, b'{"ttl":"inf"}', "ttl: invalid duration 'inf'"),
    ("ttl-1e20", "POST", TOKENS, b'{"ttl":1e20}', f"ttl: duration {TOO_LONG}"),
    ("ttl-1e400", "POST", TOKENS, b'{"ttl":1e400}', f"ttl: duration {TOO_LONG}"),
    ("ttl-days", "POST", TOKENS, b'{"ttl":"9999999999d"}', "ttl: duration '99"),
    ("ttl-neg", "POST", TOKENS, b'{"ttl":-5}', "ttl: negative duration"),
    (
        "expires-days",
        "POST",
        KEYS,
        b'{"name":"x","expires_at":"9999999999d"}',
        f"expires_at: duration '9999999999d' {TOO_LONG}",
    ),
    (
        "expires-inf",
        "POST",
        KEYS,
        b'{"name":"x","expires_at":"inf"}',
        "expires_at: invalid time 'inf'",
    ),
    (
        "expires-1e400d",
        "POST",
        KEYS,
        b'{"name":"x","expires_at":"1e400d"}',
        f"expires_at: invalid time '1e400d': {NOT_A_TIME}",
    ),
    (
        "expires-offset",
        "POST",
        KEYS,
        b'{"name":"x","expires_at":"9999-12-31T23:59:59-10:00"}',
        "expires_at: time '9999-12-31T23:59:59-10:00' is out of range",
    ),
    (
        "expires-number",
        "POST",
        KEYS,
        b'{"name":"x","expires_at":1e400}',
        "expires_at: expected an RFC 3339 time, a duration or null",
    ),
    (
        "patch-expires",
        "PATCH",
        ALICE,
        b'{"expires_at":"9999999999w"}',
        f"expires_at: duration '9999999999w' {TOO_LONG}",
    ),
    (
        "rpm-huge",
        "POST",
        KEYS,
        _limit("requests_per_minute", "1" + "0" * 30),
        f"limits.requests_per_minute: {BAD_LIMIT}",
    ),
    (
        "concurrent-float",
        "POST",
        KEYS,
        _limit("concurrent", "1.5"),
        f"limits.concurrent: {BAD_LIMIT}",
    ),
    (
        "concurrent-1e400",
        "POST",
        KEYS,
        _limit("concurrent", "1e400"),
        f"limits.concurrent: {BAD_LIMIT}",
    ),
    (
        "day-true",
        "POST",
        KEYS,
        _limit("tokens_per_day", "true"),
        f"limits.tokens_per_day: {BAD_LIMIT}",
    ),
    (
        "day-false",
        "POST",
        KEYS,
        _limit("tokens_per_day", "false"),
        f"limits.tokens_per_day: {BAD_LIMIT}",
    ),
    (
        "month-zero-float",
        "POST",
        KEYS,
        _limit("tokens_per_month", "0.0"),
        f"limits.tokens_per_month: {BAD_LIMIT}",
    ),
    (
        "patch-month-huge",
        "PATCH",
        ALICE,
        b'{"limits":{"tokens_per_month":1' + b"0" * 400 + b"}}",
        f"limits.tokens_per_month: {BAD_LIMIT}",
    ),
    ("since-inf", "GET", "/admin/usage?since=inf", None, "since: invalid time 'inf'"),
    ("until-1e400d", "GET", "/admin/usage?until=1e400d", None, "until: invalid"),
    (
        "since-days",
        "GET",
        "/admin/usage?since=9999999999d",
        None,
        f"since: duration '9999999999d' {TOO_LONG}",
    ),
    (
        "since-offset",
        "GET",
        "/admin/usage?since=0001-01-01T00:00:00%2B01:00",
        None,
        "since: time '0001-01-01T00:00:00+01:00' is out of range",
    ),
    ("until-neg", "GET", "/admin/usage?until=-5", None, "until: negative duration"),
    ("deep", "POST", KEYS, b"[" * 60000, "body: nested too deeply"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "error"),
    [case[1:] for case in OUT_OF_RANGE],
    ids=[case[0] for case in OUT_OF_RANGE],
)
async def test_out_of_range_numbers_are_a_400(
    stack: Stack, keys_path: Path, log_capture, method, path, body, error
) -> None:
    """Infinite, NaN, huge or negative numbers are a 400 naming the field, no 500."""
    before = keys_path.read_bytes()
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    if method != "GET":
        headers["Content-Type"] = "application/json"
    resp = await stack.admin.request(method, path, data=body, headers=headers)
    assert resp.status == HTTPStatus.BAD_REQUEST
    data = await resp.json()
    assert data["error"].startswith(error)
    assert len(data["error"]) < 200
    assert keys_path.read_bytes() == before
    assert log_capture.events("request_failed") == []
    assert [line for line in log_capture.lines() if line["level"] == "error"] == []


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


# --- rotation, revocation, expiry ----------------------------------------------


async def test_rotation_with_grace(stack: Stack, key) -> None:
    """After rotating with a grace, old and new tokens work until the grace ends."""
    old = str(key.token)
    status, rotated = await stack.api(
        "POST", "/admin/keys/alice/rotate", {"grace": "1h"}
    )
    assert status == 200
    new = rotated["token"]
    assert rotated["id"] == key.record.id
    assert (await stack.call(old), await stack.call(new)) == (200, 200)
    stack.clock.advance(minutes=59)
    assert (await stack.call(old), await stack.call(new)) == (200, 200)
    stack.clock.advance(minutes=2)
    assert (await stack.call(old), await stack.call(new)) == (401, 200)


async def test_rotation_without_grace(stack: Stack, key) -> None:
    """With grace 0 the old token stops at once, even from the cache."""
    assert await stack.call(str(key.token)) == 200
    _, rotated = await stack.api("POST", "/admin/keys/alice/rotate", {"grace": 0})
    assert await stack.call(str(key.token)) == 401
    assert await stack.call(rotated["token"]) == 200


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


async def test_revoke_with_a_warm_cache(stack: Stack, key) -> None:
    """Revocation is effective for the very next request, cached or not."""
    assert await stack.call(str(key.token)) == 200
    assert await stack.call(str(key.token)) == 200
    status, data = await stack.api("POST", "/admin/keys/alice/revoke")
    assert (status, data["status"], data["changed"]) == (200, "revoked", True)
    assert await stack.call(str(key.token)) == 401
    status, data = await stack.api("PATCH", "/admin/keys/alice", {"disabled": False})
    assert (status, data["error"]) == (
        400,
        "disabled: a revoked key cannot be enabled again",
    )


async def test_expiry_and_disable(stack: Stack, key) -> None:
    """Expiry and disabling apply at request time, also to cached verifications."""
    assert await stack.call(str(key.token)) == 200
    status, _ = await stack.api("PATCH", "/admin/keys/alice", {"expires_at": "2h"})
    assert status == 200
    stack.clock.advance(hours=3)
    assert await stack.call(str(key.token)) == 401
    await stack.api(
        "PATCH", "/admin/keys/alice", {"expires_at": None, "disabled": True}
    )
    assert await stack.call(str(key.token)) == 401
    await stack.api("PATCH", "/admin/keys/alice", {"disabled": False})
    assert await stack.call(str(key.token)) == 200


# --- scopes and model allow-lists ------------------------------------------------

ROUTES = {
    "inference": ("POST", "/api/chat", CHAT),
    "embeddings": ("POST", "/api/embed", {"model": "nomic-embed-text", "input": "x"}),
    "models:read": ("GET", "/api/tags", None),
    "models:manage": ("POST", "/api/pull", {"model": "llama3.2"}),
    "cloud": ("POST", "/api/me", None),
}


@pytest.mark.parametrize("scope", sorted(ROUTES))
async def test_each_scope_opens_only_its_routes(
    stack: Stack, scope: str, fake: FakeOllama
) -> None:
    """One scope opens its class; elsewhere the key gets a 403 naming the scope."""
    _, created = await stack.api(
        "POST",
        "/admin/keys",
        {"name": f"only-{scope.replace(':', '-')}", "scopes": [scope]},
    )
    for route_scope, (method, path, body) in ROUTES.items():
        resp = await stack.proxy.request(
            method,
            path,
            json=body,
            headers={"Authorization": f"Bearer {created['token']}"},
        )
        if route_scope == scope:
            assert resp.status != 403, path
        else:
            assert resp.status == 403, path
            assert await resp.json() == {
                "error": f"this key lacks the {route_scope!r} scope"
            }


async def test_unclassified_routes_need_every_scope(stack: Stack, key) -> None:
    """An unknown route is open only to a key holding every scope."""
    _, most = await stack.api(
        "POST",
        "/admin/keys",
        {
            "name": "most",
            "scopes": [
                "inference",
                "embeddings",
                "models:read",
                "models:manage",
                "cloud",
            ],
        },
    )
    assert await stack.call(most["token"], path="/api/unknown") == 403
    assert await stack.call(str(key.token), path="/api/unknown") == 404


async def test_cloud_models_need_the_cloud_scope(stack: Stack) -> None:
    """A `*-cloud` model is refused to keys without the cloud scope."""
    _, plain = await stack.api("POST", "/admin/keys", {"name": "plain"})
    body = {**CHAT, "model": "gpt-oss:120b-cloud"}
    resp = await stack.proxy.post(
        "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {plain['token']}"},
    )
    assert resp.status == 403
    assert await resp.json() == {"error": "this key lacks the 'cloud' scope"}


async def test_model_allow_list(
    stack: Stack, fake: FakeOllama, audit_path: Path
) -> None:
    """Other models get 403 on native and /v1 routes; nothing is forwarded."""
    _, created = await stack.api(
        "POST", "/admin/keys", {"name": "dash", "models": ["llama3.2"]}
    )
    token = created["token"]
    assert await stack.call(token, "POST", "/api/chat", CHAT) == 200
    assert (
        await stack.call(
            token, "POST", "/v1/chat/completions", {**CHAT, "model": "llama3.2:latest"}
        )
        == 200
    )
    fake.received.clear()
    for method, path, body in [
        ("POST", "/api/chat", {**CHAT, "model": "qwen3:8b"}),
        ("POST", "/api/generate", {"model": "llama3.2:1b", "prompt": "x"}),
        ("POST", "/v1/chat/completions", {**CHAT, "model": "qwen3"}),
        ("POST", "/v1/messages", {**CHAT, "model": "qwen3", "max_tokens": 5}),
        ("POST", "/api/embed", {"model": "nomic-embed-text", "input": "x"}),
        ("POST", "/api/chat", {"messages": []}),
        ("POST", "/api/show", {"model": "qwen3:8b"}),
        ("GET", "/v1/models/qwen3:8b", None),
    ]:
        resp = await stack.proxy.request(
            method, path, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status == 403, (path, body)
    assert fake.received == []
    denied = [json.loads(line) for line in audit_path.read_text().splitlines()][-1]
    assert (denied["outcome"], denied["reason"]) == ("denied", "model_not_allowed")


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


# --- JWTs ----------------------------------------------------------------------


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


async def test_signing_key_rotation(stack: Stack, config_file: Path, capsys) -> None:
    """After `signing-key rotate`, old tokens stay valid; new ones use the new kid."""

    _, before = await stack.api("POST", "/admin/keys/alice/tokens", {"ttl": "1h"})
    code = await asyncio.to_thread(
        main, ["signing-key", "rotate", "--json", "--config", str(config_file)]
    )
    rotated = json.loads(capsys.readouterr().out)
    assert code == 0
    await stack.proxy.app[WATCHER_KEY].reload_signing(force=True)
    _, after = await stack.api("POST", "/admin/keys/alice/tokens", {"ttl": "1h"})
    assert pyjwt.get_unverified_header(after["token"])["kid"] == rotated["kid"]
    assert (
        pyjwt.get_unverified_header(before["token"])["kid"] in rotated["verifying_kids"]
    )
    assert await stack.call(before["token"]) == 200
    assert await stack.call(after["token"]) == 200


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


# --- concurrency, trail, usage, OpenAPI ------------------------------------------


async def test_concurrent_cli_and_api_writers_lose_nothing(
    stack: Stack, config_file: Path, keys_path: Path
) -> None:
    """10 CLI processes and 10 API calls creating keys at once: all 20 are kept."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "authproxy",
            "keys",
            "create",
            f"cli-{i}",
            "--json",
            "--config",
            str(config_file),
            stdout=asyncio.subprocess.PIPE,
        )
        for i in range(10)
    ]
    api_calls = [
        stack.api("POST", "/admin/keys", {"name": f"api-{i}"}) for i in range(10)
    ]
    results = await asyncio.gather(*api_calls, *(p.communicate() for p in procs))
    assert all(r[0] == 201 for r in results[:10])
    for out, _ in results[10:]:
        stack.secrets.add(json.loads(out)["token"])
    assert all(p.returncode == 0 for p in procs)
    names = set(read_store(keys_path).by_name)
    assert {f"cli-{i}" for i in range(10)} | {f"api-{i}" for i in range(10)} <= names


async def test_admin_trail_records_actions_without_secrets(
    stack: Stack, audit_path: Path
) -> None:
    """Create, update, rotate, token and revoke are recorded with actor and key id."""
    _, created = await stack.api("POST", "/admin/keys", {"name": "audited"})
    await stack.api("PATCH", "/admin/keys/audited", {"note": "n"})
    _, rotated = await stack.api("POST", "/admin/keys/audited/rotate", {"grace": "1m"})
    _, minted = await stack.api("POST", "/admin/keys/audited/tokens", {})
    await stack.api("POST", "/admin/keys/audited/revoke")
    trail_path = audit_path.with_name("admin.jsonl")
    text = trail_path.read_text()
    records = [json.loads(line) for line in text.splitlines()]
    assert [(r["action"], r["actor"], r["key_id"], r["source"]) for r in records] == [
        (action, "ops", created["id"], "api")
        for action in ("create", "update", "rotate", "token", "revoke")
    ]
    assert all(r["ts"].endswith("Z") and r["request_id"] for r in records)
    for secret in (created["token"], rotated["token"], minted["token"]):
        assert secret not in text
    assert verify_files([trail_path]).ok


async def test_usage_endpoint(stack: Stack, key) -> None:
    """GET /admin/usage serves the audit numbers grouped like `authproxy usage`."""
    for _ in range(2):
        await stack.call(str(key.token), "POST", "/api/chat", CHAT)
    status, data = await stack.api("GET", "/admin/usage?by=key&by=model")
    assert status == 200
    assert data["by"] == ["key", "model"]
    rows = {(r["key"], r["model"]): r for r in data["rows"]}
    assert rows[("alice", "llama3.2")]["requests"] == 2
    assert rows[("alice", "llama3.2")]["total_tokens"] == 60


def _documented_admin_example() -> list[str]:
    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "keys-and-policy.md").read_text("utf-8")
    section = text[text.index("\n## Admin API\n") : text.index("\n## JWTs\n")]
    return section.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()


async def test_documented_admin_examples_work(stack: Stack) -> None:
    """Each curl command of the documented admin example succeeds against the API."""
    setup, *lines = _documented_admin_example()
    commands = [line for line in lines if line.startswith("curl ")]
    assert len(commands) == 9
    admin_url = str(stack.admin.make_url("")).rstrip("/")
    statuses = []
    for command in commands:
        script = (
            f"{setup}\nADMIN={admin_url}\n{command} -o /dev/null -w '%{{http_code}}'"
        )
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            script,
            env={"PATH": "/usr/bin:/bin", "ADMIN_TOKEN": stack.admin_token},
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        statuses.append(out.decode())
    assert statuses == ["201", "200", "200", "200", "200", "201", "200", "200", "200"]


def test_openapi_document_is_valid_and_complete() -> None:
    """The OpenAPI 3.1 document validates and lists exactly the admin routes."""
    validate(OPENAPI)
    app = create_admin_app(create_app(load_config()))
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {
        (method, path)
        for path, item in OPENAPI["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert documented == routes
    names = {r.name for r in app.router.routes() if r.name}
    operations = {
        op["operationId"]
        for item in OPENAPI["paths"].values()
        for k, op in item.items()
        if k != "parameters"
    }
    assert operations == names
    for item in OPENAPI["paths"].values():
        for method, op in item.items():
            if method == "parameters":
                continue
            assert "421" in op["responses"], op["operationId"]
            assert ("415" in op["responses"]) is (method != "get"), op["operationId"]


async def test_openapi_is_served_without_credentials(stack: Stack) -> None:
    """GET /admin/openapi.json needs no credential."""
    resp = await stack.admin.get("/admin/openapi.json")
    assert resp.status == 200
    assert (await resp.json())["openapi"] == "3.1.0"


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
