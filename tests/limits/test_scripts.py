"""limits.scripts: the Lua admission and settlement, run in a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from authproxy.limits.scripts import ADMIT, RENEW, SETTLE
from tests.support.redis import RedisServer

KEYS = ["k:rpm", "k:leases", "k:reserved", "k:day", "k:month"]


@pytest.fixture
def client(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url, decode_responses=True)


def _admit(
    client: redis.Redis,
    lease: str,
    *,
    rpm: int = -1,
    concurrent: int = -1,
    day: int = -1,
    tokens: int = 0,
    metered: bool = False,
) -> Any:
    args: list[str | int] = [
        rpm,
        concurrent,
        day,
        -1,
        tokens,
        lease,
        60000,
        "1" if metered else "0",
    ]
    return client.eval(ADMIT, len(KEYS), *KEYS, *args)


def _state(client: redis.Redis) -> dict[str, Any]:
    return {
        "rpm": client.hgetall("k:rpm"),
        "leases": client.zrange("k:leases", 0, -1),
        "reserved": client.hgetall("k:reserved"),
        "day": client.get("k:day"),
    }


def test_a_refusal_changes_nothing(client: redis.Redis) -> None:
    """A request refused for its quota takes no rate, no slot, no reservation."""
    assert _admit(client, "l1", rpm=5, day=10, tokens=10, metered=True) == ["ok"]
    before = _state(client)
    refused = _admit(client, "l2", rpm=5, day=10, tokens=10, metered=True)
    assert refused[0] == "token_quota_day"
    assert _state(client) == before


def test_settling_frees_the_slot_and_charges_the_real_count(
    client: redis.Redis,
) -> None:
    """The reservation is dropped and the tokens used are added to the day."""
    assert _admit(client, "l1", concurrent=1, tokens=100, metered=True) == ["ok"]
    assert _admit(client, "l2", concurrent=1)[0] == "concurrency_limit"
    client.eval(SETTLE, 4, *KEYS[1:], "l1", 30, 86400, 86400)
    assert _state(client)["leases"] == []
    assert _state(client)["reserved"] == {}
    assert client.get("k:day") == "30"
    assert client.get("k:month") == "30"
    assert _admit(client, "l2", concurrent=1) == ["ok"]


def test_an_expired_lease_is_dropped_with_its_reservation(client: redis.Redis) -> None:
    """A lease past its expiry no longer counts, nor do the tokens it held."""
    assert _admit(client, "old", concurrent=1, tokens=5, metered=True) == ["ok"]
    client.zadd("k:leases", {"old": 1})  # expired long ago
    assert _admit(client, "new", concurrent=1, day=6, tokens=5, metered=True) == ["ok"]
    assert _state(client)["leases"] == ["new"]
    assert _state(client)["reserved"] == {"new": "5"}


def test_renewal_extends_only_leases_still_held(client: redis.Redis) -> None:
    """RENEW moves a held lease's expiry on and never brings back a settled one."""
    assert _admit(client, "held") == ["ok"]
    before = client.zscore("k:leases", "held")
    assert before is not None
    client.eval(RENEW, 2, "k:leases", "k:leases", 120000, "held", "gone")
    after = client.zscore("k:leases", "held")
    assert after is not None
    assert after > before
    assert client.zscore("k:leases", "gone") is None
