"""auth.bruteforce: failures per client, guesses in flight, blocked addresses."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from authproxy.auth.bruteforce import FailureLimiter, client_bucket
from authproxy.auth.minting import mint_key_token
from authproxy.keys.lifecycle import revoke_key
from authproxy.keys.store import format_token
from authproxy.times import utc_now
from authproxy.web.appkeys import (
    BRUTE_FORCE_KEY,
    VERIFIER_KEY,
    WATCHER_KEY,
)
from tests.support.auth import basic_auth, bearer_auth, slow_hash
from tests.support.clock import MonotonicClock
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import MakeKey
from tests.support.polling import poll_until


class TestFailureLimiter:
    def test_blocks_after_the_threshold_within_the_window(self) -> None:
        """The 3rd failure inside 60 s blocks the client for the cool-down."""
        clock = MonotonicClock()
        limiter = FailureLimiter(
            threshold=3, window=60, cooldown=300, max_clients=10, monotonic=clock
        )
        assert limiter.failed("10.0.0.1") is False
        clock.now += 30
        assert limiter.failed("10.0.0.1") is False
        assert limiter.retry_after("10.0.0.1") is None
        assert limiter.failed("10.0.0.1") is True
        assert limiter.retry_after("10.0.0.1") == 300
        assert limiter.retry_after("10.0.0.2") is None
        clock.now += 299.5
        assert limiter.retry_after("10.0.0.1") == 1
        clock.now += 1
        assert limiter.retry_after("10.0.0.1") is None

    def test_old_failures_slide_out(self) -> None:
        """Failures older than the window do not count."""
        clock = MonotonicClock()
        limiter = FailureLimiter(
            threshold=3, window=60, cooldown=300, max_clients=10, monotonic=clock
        )
        for _ in range(2):
            limiter.failed("a")
        clock.now += 61
        assert limiter.failed("a") is False
        assert limiter.retry_after("a") is None

    def test_memory_is_bounded(self) -> None:
        """At most max_clients addresses are tracked (oldest forgotten first)."""
        limiter = FailureLimiter(
            threshold=5,
            window=60,
            cooldown=1,
            max_clients=100,
            monotonic=MonotonicClock(),
        )
        for i in range(1000):
            limiter.failed(f"10.0.{i // 256}.{i % 256}")
        assert len(limiter._clients) == 100

    def test_disabled_with_zero(self) -> None:
        """auth_failures 0 turns the limiter off."""
        limiter = FailureLimiter(threshold=0, window=60, cooldown=300, max_clients=10)
        assert limiter.failed("x") is False
        assert limiter.retry_after("x") is None

    @pytest.mark.parametrize(
        ("address", "bucket"),
        [
            ("192.0.2.7", "192.0.2.7"),
            ("2001:db8::1", "2001:db8::/64"),
            ("2001:db8::ffff:1", "2001:db8::/64"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("weird", "weird"),
        ],
    )
    def test_ipv6_is_counted_per_64(self, address, bucket) -> None:
        """An attacker rotating addresses inside one IPv6 /64 is one client."""
        assert client_bucket(address) == bucket


async def test_blocked_client_gets_429_before_any_hashing(
    start_proxy, key, fake: FakeOllama
) -> None:
    """Past the threshold even a valid key from that address gets 429, at no cost."""
    client = await start_proxy(
        {"limits.auth_failures": 3, "limits.auth_cooldown": "1h"}
    )
    stats = client.app[VERIFIER_KEY].stats
    wrong = {"Authorization": f"Bearer {format_token(key.record.id, 'Z' * 43)}"}
    for _ in range(3):
        assert (await client.get("/api/tags", headers=wrong)).status == 401
    resp = await client.get(
        "/api/tags", headers={"Authorization": f"Bearer {key.token}"}
    )
    assert resp.status == HTTPStatus.TOO_MANY_REQUESTS
    assert await resp.json() == {
        "error": "too many failed authentications; retry later"
    }
    assert 3590 <= int(resp.headers["Retry-After"]) <= 3600
    assert stats.argon2_verifications == 0
    assert fake.received == []


async def test_requests_without_a_credential_are_no_guesses(
    start_proxy, key, fake: FakeOllama
) -> None:
    """Credential-less requests (a favicon, a client awaiting the challenge): no block.

    A malformed credential still counts: only the absence of any is no guess.
    """
    client = await start_proxy({"limits.auth_failures": 3})
    for _ in range(10):
        resp = await client.get("/favicon.ico")
        assert resp.status == HTTPStatus.UNAUTHORIZED
        assert "WWW-Authenticate" in resp.headers
    good = {"Authorization": f"Bearer {key.token}"}
    assert (await client.get("/api/tags", headers=good)).status == 200
    for _ in range(3):
        bad = await client.get("/api/tags", headers={"Authorization": "Bearer nope"})
        assert bad.status == HTTPStatus.UNAUTHORIZED
    blocked = await client.get("/api/tags", headers={"Authorization": "Bearer nope"})
    assert blocked.status == HTTPStatus.TOO_MANY_REQUESTS


async def test_other_clients_are_unaffected(start_proxy, key, fake: FakeOllama) -> None:
    """Behind a trusted proxy, blocking one client leaves the others working."""
    client = await start_proxy(
        {"limits.auth_failures": 2, "server.trusted_proxies": ["127.0.0.1"]}
    )
    attacker = {"X-Forwarded-For": "203.0.113.9", "Authorization": "Bearer nope"}
    for _ in range(2):
        await client.get("/api/tags", headers=attacker)
    assert (await client.get("/api/tags", headers=attacker)).status == 429
    honest = {"X-Forwarded-For": "198.51.100.4", "Authorization": f"Bearer {key.token}"}
    assert (await client.get("/api/tags", headers=honest)).status == 200


async def test_flood_of_bogus_credentials(start_proxy, key, fake: FakeOllama) -> None:
    """A bounded flood of bogus keys (many addresses) leaves the valid key working."""
    client = await start_proxy({"server.trusted_proxies": ["127.0.0.1"]})
    stats = client.app[VERIFIER_KEY].stats
    valid = {"Authorization": f"Bearer {key.token}"}

    async def bogus(i: int) -> int:
        token = format_token(key.record.id if i % 2 else "aaaaaaaaaaaa", f"{i:0>43}")
        headers = {
            "Authorization": f"Bearer {token}",
            "X-Forwarded-For": f"198.18.{i % 250}.{i // 250}",
        }
        resp = await client.get("/api/tags", headers=headers)
        status: int = resp.status
        return status

    # The sleeps shape the load (two waves, an honest client in between): they
    # are the behaviour under test, not a wait for something to happen.
    async def flood() -> list[int]:
        statuses = []
        for second in range(2):
            batch = range(second * 200, (second + 1) * 200)
            statuses += await asyncio.gather(*(bogus(i) for i in batch))
            await asyncio.sleep(0.5)
        return statuses

    async def honest() -> list[int]:
        statuses = []
        for _ in range(40):
            statuses.append((await client.get("/api/tags", headers=valid)).status)
            await asyncio.sleep(0.02)
        return statuses

    flood_statuses, honest_statuses = await asyncio.gather(flood(), honest())
    assert set(flood_statuses) == {401}
    assert honest_statuses == [200] * 40
    assert stats.argon2_verifications == 1  # the valid key, once; bogus ones cost none


# Slow enough that 80 requests all arrive while the first checks still run.
SLOW_ARGON2 = {"keys.argon2.memory_cost": 16384, "keys.argon2.time_cost": 2}


PASSWORD = "correct horse battery"


LOCAL = "127.0.0.1"


def limiter(threshold: int = 3) -> FailureLimiter:
    return FailureLimiter(
        threshold=threshold,
        window=60,
        cooldown=300,
        max_clients=10,
        monotonic=MonotonicClock(),
    )


class TestChecksInFlight:
    def test_checks_in_flight_count_against_the_threshold(self) -> None:
        """With 3 checks in flight at threshold 3, a 4th waits until one settles."""
        failures = limiter()
        assert [failures.admit("a") for _ in range(4)] == [True, True, True, False]
        assert failures.in_flight("a") == 3
        assert failures.admit("b") is True
        assert failures.release("a", failed=False) is False
        assert failures.in_flight("a") == 2
        assert failures.admit("a") is True

    def test_failed_checks_are_failures(self) -> None:
        """Each failed check is counted when it settles; the threshold-th blocks."""
        failures = limiter()
        for _ in range(3):
            assert failures.admit("a") is True
        assert [failures.release("a", failed=True) for _ in range(3)] == [
            False,
            False,
            True,
        ]
        assert failures.in_flight("a") == 0
        assert failures.retry_after("a") == 300
        assert failures.admit("a") is False

    def test_failures_and_checks_in_flight_add_up(self) -> None:
        """Two failures in the window leave room for one check at threshold 3."""
        failures = limiter()
        failures.failed("a")
        failures.failed("a")
        assert [failures.admit("a"), failures.admit("a")] == [True, False]

    def test_a_client_that_only_succeeds_leaves_nothing_behind(self) -> None:
        """A settled successful check forgets the client (memory stays bounded)."""
        failures = limiter()
        assert failures.admit("a") is True
        failures.release("a", failed=False)
        assert failures._clients == {}

    def test_an_ipv6_64_shares_one_allowance(self) -> None:
        """Checks in flight are counted per IPv6 /64 like failures."""
        failures = limiter(threshold=2)
        assert failures.admit("2001:db8::1") is True
        assert failures.admit("2001:db8::2") is True
        assert failures.admit("2001:db8::3") is False

    def test_disabled_with_zero(self) -> None:
        """auth_failures 0 admits every check and counts nothing."""
        failures = limiter(threshold=0)
        assert all(failures.admit("a") for _ in range(100))
        assert failures.in_flight("a") == 0
        assert failures.release("a", failed=True) is False
        assert failures.retry_after("a") is None

    def test_a_client_evicted_mid_check_settles_cleanly(self) -> None:
        """A check whose client was forgotten (past max_clients) still settles."""
        failures = FailureLimiter(
            threshold=2,
            window=60,
            cooldown=300,
            max_clients=1,
            monotonic=MonotonicClock(),
        )
        assert failures.admit("a") is True
        assert failures.admit("b") is True  # evicts a
        assert failures.release("a", failed=False) is False
        assert (failures.in_flight("a"), failures.in_flight("b")) == (0, 1)
        assert failures.release("a", failed=True) is False
        assert failures.in_flight("a") == 0


class TestConcurrentGuesses:
    @pytest.fixture
    def overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        return {**overrides, **SLOW_ARGON2}

    @pytest.mark.parametrize("user", ["human", "nobody"])
    async def test_concurrent_guesses_run_at_most_the_threshold(
        self, start_proxy, make_key: MakeKey, fake: FakeOllama, user: str
    ) -> None:
        """80 concurrent wrong Basic guesses from one address run 20 argon2 checks."""
        make_key("human", password=PASSWORD)
        client = await start_proxy()
        stats = client.app[VERIFIER_KEY].stats
        replies = await asyncio.gather(
            *(
                client.get("/api/tags", headers=basic_auth(user, f"guess-{i}"))
                for i in range(80)
            )
        )
        assert sorted(r.status for r in replies) == [401] * 20 + [429] * 60
        assert stats.argon2_verifications == 20
        assert client.app[BRUTE_FORCE_KEY].retry_after(LOCAL) is not None
        assert fake.received == []

    async def test_every_uncached_basic_refusal_costs_one_check(
        self, start_proxy, make_key: MakeKey, key, keys_path: Path
    ) -> None:
        """Whatever a Basic user name matches, a refusal runs one argon2 check."""
        make_key("human", password=PASSWORD)
        make_key("gone", password=PASSWORD)
        revoke_key(keys_path, "gone", now=utc_now())
        wrong_token = format_token(key.record.id, "A" * 43)
        cases = {
            "password key, wrong password": basic_auth("human", "wrong"),
            "no such name": basic_auth("nobody", "wrong"),
            "token key's name, not a token": basic_auth("alice", "wrong"),
            "token key's name, another id's token": basic_auth(
                "alice", format_token("aaaaaaaaaaaa", "A" * 43)
            ),
            "token key's name, wrong token": basic_auth("alice", wrong_token),
            "revoked password key, wrong password": basic_auth("gone", "wrong"),
        }
        client = await start_proxy()
        stats = client.app[VERIFIER_KEY].stats
        for case, headers in cases.items():
            before = stats.argon2_verifications
            for _ in range(2):
                resp = await client.get("/api/tags", headers=headers)
                assert resp.status == HTTPStatus.UNAUTHORIZED, case
            assert stats.argon2_verifications - before == 2, case
        # A Bearer token names its key id: an unknown one costs nothing either way.
        before = stats.argon2_verifications
        resp = await client.get("/api/tags", headers=bearer_auth(wrong_token))
        assert resp.status == HTTPStatus.UNAUTHORIZED
        assert stats.argon2_verifications == before


async def test_a_cached_credential_passes_a_blocked_address(
    start_proxy, key, make_key: MakeKey, fake: FakeOllama, secrets_seen
) -> None:
    """Shared NAT: after 20 bad requests a verified key still works; new ones wait."""
    make_key("human", password=PASSWORD)
    bob = make_key("bob")
    client = await start_proxy()
    verifier = client.app[VERIFIER_KEY]
    assert verifier.signing_keys is not None
    jwt = mint_key_token(
        verifier.signing_keys,
        key.record,
        ttl=timedelta(minutes=5),
        max_ttl=timedelta(hours=1),
        now=utc_now(),
    )["token"]
    secrets_seen.add(jwt)
    assert (await client.get("/api/tags", headers=bearer_auth(key.token))).status == 200
    wrong = bearer_auth(format_token(key.record.id, "Z" * 43))
    for _ in range(20):
        assert (await client.get("/api/tags", headers=wrong)).status == 401
    assert (await client.get("/api/tags", headers=wrong)).status == 429
    checks = verifier.stats.argon2_verifications
    fake.received.clear()
    # Proven without argon2: the cached token, a JWT.
    assert (await client.get("/api/tags", headers=bearer_auth(key.token))).status == 200
    assert (await client.get("/api/tags", headers=bearer_auth(jwt))).status == 200
    assert len(fake.received) == 2
    # Would need argon2: refused, at no cost.
    for headers in (
        bearer_auth(bob.token),
        basic_auth("human", PASSWORD),
        basic_auth("x", "y"),
    ):
        resp = await client.get("/api/tags", headers=headers)
        assert resp.status == HTTPStatus.TOO_MANY_REQUESTS
        assert await resp.json() == {
            "error": "too many failed authentications; retry later"
        }
        assert 290 <= int(resp.headers["Retry-After"]) <= 300
    assert verifier.stats.argon2_verifications == checks
    assert len(fake.received) == 2


async def test_a_cached_credential_of_a_revoked_key_fails_when_blocked(
    start_proxy, key, keys_path: Path, fake: FakeOllama
) -> None:
    """The cached path still checks the live record: a revoked key is refused."""
    client = await start_proxy({"limits.auth_failures": 2})
    assert (await client.get("/api/tags", headers=bearer_auth(key.token))).status == 200
    wrong = bearer_auth(format_token(key.record.id, "Z" * 43))
    for _ in range(2):
        await client.get("/api/tags", headers=wrong)
    revoke_key(keys_path, "alice", now=utc_now())
    await client.app[WATCHER_KEY].reload(force=True)
    fake.received.clear()
    resp = await client.get("/api/tags", headers=bearer_auth(key.token))
    assert resp.status == HTTPStatus.TOO_MANY_REQUESTS
    assert fake.received == []


async def test_busy_refusals_release_their_reservation(
    start_proxy, key, fake: FakeOllama
) -> None:
    """Checks refused with 503 (queue full) neither stay in flight nor count."""
    client = await start_proxy(
        {"keys.verify_workers": 1, "keys.verify_queue": 0, "limits.auth_failures": 6}
    )
    slow_hash(client.app[VERIFIER_KEY], key.record.id, "x")
    failures = client.app[BRUTE_FORCE_KEY]
    guesses = [bearer_auth(format_token(key.record.id, f"{i:0>43}")) for i in range(10)]
    replies = await asyncio.gather(
        *(client.get("/api/tags", headers=guesses[i]) for i in range(4))
    )
    statuses = [r.status for r in replies]
    assert HTTPStatus.SERVICE_UNAVAILABLE in statuses
    assert failures.in_flight(LOCAL) == 0
    counted = statuses.count(401)
    sequential = [
        (await client.get("/api/tags", headers=guesses[i])).status
        for i in range(4, 4 + 6 - counted + 1)
    ]
    assert sequential == [401] * (6 - counted) + [429]


async def test_a_cancelled_guess_still_counts(
    start_proxy, key, fake: FakeOllama
) -> None:
    """A guess whose client left is counted when its check ends, then released."""
    client = await start_proxy({"limits.auth_failures": 2})
    slow_hash(client.app[VERIFIER_KEY], key.record.id, "x")
    failures = client.app[BRUTE_FORCE_KEY]
    guess = bearer_auth(format_token(key.record.id, "Q" * 43))
    first = asyncio.ensure_future(client.get("/api/tags", headers=guess))
    await poll_until(lambda: failures.in_flight(LOCAL), within=2.0, interval=0.005)
    assert failures.in_flight(LOCAL) == 1
    first.cancel()
    await poll_until(lambda: not failures.in_flight(LOCAL), within=5.0)
    assert failures.in_flight(LOCAL) == 0
    assert failures.blocks == 0
    other = bearer_auth(format_token(key.record.id, "R" * 43))
    assert (await client.get("/api/tags", headers=other)).status == 401
    assert failures.blocks == 1
    assert (await client.get("/api/tags", headers=other)).status == 429
