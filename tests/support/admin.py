"""The admin API next to a running proxy, both on one hand-moved clock."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient

from tests.support.auth import bearer_auth
from tests.support.clock import WallClock
from tests.support.logs import Secrets


@dataclass
class Stack:
    """A running proxy and its admin API sharing one clock."""

    proxy: TestClient[Any, Any]
    admin: TestClient[Any, Any]
    admin_token: str
    clock: WallClock
    secrets: Secrets

    async def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Call the admin API as the admin key (or ``token``); status and JSON."""
        auth = {
            **bearer_auth(token or self.admin_token),
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
        """Send one request through the proxy with ``token``; return its status."""
        resp = await self.proxy.request(
            method, path, json=body, headers=bearer_auth(token)
        )
        await resp.read()
        return resp.status
