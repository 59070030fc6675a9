"""admin.usage: GET /admin/usage from the audit log, or from Redis for the fleet."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from tests.support.admin import Stack
from tests.support.harness import MakeKey, StartReplica
from tests.support.payloads import CHAT
from tests.support.polling import poll_until
from tests.support.redis import RedisServer


async def test_the_file_backend_reads_the_audit_log(stack: Stack, key) -> None:
    """With state.backend file the report says its source is the audit log."""
    await stack.call(str(key.token), "POST", "/api/chat", CHAT)
    status, data = await stack.api("GET", "/admin/usage?by=replica")
    assert status == 200
    assert data["source"] == "audit"
    assert "days" not in data
    assert [r["requests"] for r in data["rows"]] == [1]


async def test_an_unknown_dimension_names_the_known_ones(stack: Stack) -> None:
    """by=team is a 400 listing key, model, day, replica and reason."""
    status, data = await stack.api("GET", "/admin/usage?by=team")
    assert status == 400
    assert data == {
        "error": "by: unknown dimension 'team' (key, model, day, replica, reason)"
    }


async def test_by_reason_counts_refusals_under_their_reason(
    stack: Stack, key: Any
) -> None:
    """A refused request counts under its reason, an admitted one under -."""
    assert await stack.call(str(key.token), "POST", "/api/chat", CHAT) == 200
    assert await stack.call("not-a-key") == 401
    status, data = await stack.api("GET", "/admin/usage?by=reason")
    assert status == 200
    rows = {r["reason"]: (r["requests"], r["denied"]) for r in data["rows"]}
    assert rows.pop("-") == (1, 0)
    assert list(rows.values()) == [(0, 1)]


@pytest.fixture
async def redis_stack(
    start_replica: StartReplica,
    redis_overrides: dict[str, Any],
    make_redis_key: MakeKey,
) -> Stack:
    """One replica on Redis (a long stale_after: Redis may go away mid-test)."""
    ops = make_redis_key("ops", scopes=["admin"])
    assert ops.token is not None
    settings = {**redis_overrides, "state.stale_after": 60, "server.replica": "r1"}
    return await start_replica(settings, ops.token)


async def test_the_redis_backend_reads_the_fleet_counters(
    redis_stack: Stack, make_redis_key: MakeKey
) -> None:
    """With state.backend redis the rows come from Redis, and say so."""
    token = make_redis_key("alice").token
    assert token is not None

    async def known() -> bool:
        return await redis_stack.call(token) == 200

    assert await poll_until(known)
    assert await redis_stack.call(token, "POST", "/api/chat", CHAT) == 200
    status, data = await redis_stack.api("GET", "/admin/usage?by=key&by=replica")
    assert status == 200
    assert data["source"] == "redis"
    assert set(data["days"]) == {"from", "to"}
    row = next(r for r in data["rows"] if r["key"] == "alice")
    assert (row["replica"], row["requests"], row["total_tokens"]) == ("r1", 2, 30)
    assert await redis_stack.call("not-a-key") == 401
    status, data = await redis_stack.api("GET", "/admin/usage?by=reason")
    assert status == 200
    denied = {r["reason"]: r["denied"] for r in data["rows"] if r["denied"]}
    assert "-" not in denied
    assert sum(denied.values()) >= 1


async def test_redis_gone_is_a_503_not_a_local_answer(
    redis_stack: Stack, redis_server: RedisServer
) -> None:
    """When the counters cannot be read the report is refused, never partial."""
    redis_server.stop()
    status, data = await redis_stack.api("GET", "/admin/usage")
    assert (status, data) == (503, {"error": "usage counters unavailable"})


async def test_a_request_counted_while_redis_is_gone_is_served_and_counted_lost(
    redis_stack: Stack, redis_server: RedisServer, make_redis_key: MakeKey
) -> None:
    """Redis down: a key without limits is served; the counters miss it, metered."""
    token = make_redis_key("alice").token
    assert token is not None

    async def known() -> bool:
        return await redis_stack.call(token) == 200

    assert await poll_until(known)
    assert await poll_until(functools.partial(_alice_requests, redis_stack, 1))
    redis_server.stop()
    assert await redis_stack.call(token) == 200  # never failed by counting

    async def lost() -> bool:
        resp = await redis_stack.admin.get("/metrics")
        text = await resp.text()
        return "authproxy_usage_counter_failures_total 1.0" in text

    assert await poll_until(lost, within=10.0)
    redis_server.start()
    assert await redis_stack.call(token) == 200

    # The first and the last request: short by the one counted while Redis was gone.
    counted = functools.partial(_alice_requests, redis_stack, 2)
    assert await poll_until(counted, within=10.0)


async def _alice_requests(stack: Stack, count: int) -> bool:
    """Tell whether the fleet's counters hold ``count`` requests of alice."""
    status, data = await stack.api("GET", "/admin/usage?by=key")
    rows = [r for r in data.get("rows", []) if r["key"] == "alice"]
    return status == 200 and [r["requests"] for r in rows] == [count]
