"""metering.recent: the bounded window of the last requests, fed by the real proxy."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from authproxy.metering.recent import FIELDS, RecentRequests
from authproxy.web.appkeys import RECENT_KEY
from tests.support.auth import bearer_auth
from tests.support.payloads import CHAT


def record(n: int) -> dict[str, Any]:
    """A record shaped like the audit log's, with a field the page must not show."""
    return {"request_id": f"r{n}", "client": "10.0.0.1", "status": 200, "ts": str(n)}


def test_keeps_the_last_records_newest_first() -> None:
    """Past its size the oldest record goes; rows come newest first."""
    recent = RecentRequests(size=3)
    for n in range(5):
        recent.add(record(n))
    assert len(recent) == 3
    assert [r["request_id"] for r in recent.rows()] == ["r4", "r3", "r2"]
    assert [r["request_id"] for r in recent.rows(limit=2)] == ["r4", "r3"]


def test_rows_hold_only_the_allowed_fields() -> None:
    """The client address and any other field stay out; missing ones are None."""
    recent = RecentRequests()
    recent.add(record(1))
    (row,) = recent.rows()
    assert tuple(row) == FIELDS
    assert "client" not in row
    assert row["model"] is None


def test_size_must_be_positive() -> None:
    """A window of no records is refused rather than silently useless."""
    with pytest.raises(ValueError, match="positive"):
        RecentRequests(size=0)


async def test_the_proxy_keeps_each_request_it_finishes(
    proxy: TestClient[Any, Any], token: str
) -> None:
    """A chat and a refused call land in the proxy's window, newest first."""
    resp = await proxy.post("/api/chat", json=CHAT, headers=bearer_auth(token))
    assert resp.status == 200
    await resp.read()
    resp = await proxy.get("/api/tags", headers=bearer_auth("not-a-key"))
    assert resp.status == 401
    rows = proxy.app[RECENT_KEY].rows()
    assert [r["status"] for r in rows] == [401, 200]
    assert rows[0]["outcome"] == "denied"
    assert rows[1]["key_name"] == "alice"
    assert rows[1]["total_tokens"] > 0
    assert rows[1]["path"] == "/api/chat"
    assert token not in repr(rows)
