"""auth.argon2pool: the bounded verification queue and the decoy hash."""

from __future__ import annotations

import asyncio
from http import HTTPStatus

import pytest
from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import VerifyMismatchError

from authproxy.auth.argon2pool import decoy_hash
from authproxy.keys.store import format_token
from authproxy.web.appkeys import VERIFIER_KEY
from tests.support.auth import slow_hash
from tests.support.fake_ollama.server import FakeOllama


async def test_verification_queue_overflow_is_503(
    start_proxy, key, fake: FakeOllama
) -> None:
    """Past verify_workers + verify_queue pending verifications: 503, Retry-After."""
    keys = [format_token(key.record.id, f"{i:0>43}") for i in range(6)]
    client = await start_proxy(
        {
            "keys.verify_workers": 1,
            "keys.verify_queue": 0,
            "keys.argon2.memory_cost": 65536,
            "keys.argon2.time_cost": 3,
        }
    )
    # The stored hash is cheap, so make the work real: re-hash it expensively.
    slow_hash(client.app[VERIFIER_KEY], key.record.id, "x")
    replies = await asyncio.gather(
        *(
            client.get("/api/tags", headers={"Authorization": f"Bearer {k}"})
            for k in keys
        )
    )
    statuses = sorted(r.status for r in replies)
    assert HTTPStatus.SERVICE_UNAVAILABLE in statuses
    assert HTTPStatus.UNAUTHORIZED in statuses
    busy = next(r for r in replies if r.status == HTTPStatus.SERVICE_UNAVAILABLE)
    assert busy.headers["Retry-After"] == "1"
    assert await busy.json() == {"error": "server busy"}
    assert fake.received == []


def test_decoy_hash_costs_a_real_verification() -> None:
    """The decoy is a valid hash in the configured parameters that nothing matches."""
    hasher = PasswordHasher(time_cost=2, memory_cost=1024, parallelism=1)
    decoy = decoy_hash(hasher)
    assert extract_parameters(decoy) == extract_parameters(hasher.hash("x"))
    with pytest.raises(VerifyMismatchError):
        hasher.verify(decoy, "anything")
    assert decoy_hash(hasher) != decoy
