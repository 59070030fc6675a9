"""admin.openapi: the document is valid, matches the router and is served."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from authproxy.admin.app import create_admin_app
from authproxy.admin.openapi import OPENAPI
from authproxy.config.load import load_config
from authproxy.times import utc_now
from authproxy.web.app import create_app
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
