"""auth.verify: keys, passwords, the verification cache, rotation and expiry."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path

from argon2 import PasswordHasher

from authproxy.keys.lifecycle import revoke_key
from authproxy.keys.store import KeyTable, format_token, read_store, update_store
from authproxy.times import utc_now
from authproxy.web.appkeys import VERIFIER_KEY, WATCHER_KEY
from tests.support.admin import Stack
from tests.support.audit import wait_audit
from tests.support.auth import assert_rejected, basic_value, slow_hash
from tests.support.clock import WallClock
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import MakeKey
from tests.support.polling import poll_until


async def test_disabled_key_is_rejected(
    proxy, fake: FakeOllama, key, keys_path: Path, bearer
) -> None:
    """A key revoked in the store is rejected; its own secret is told so."""
    revoke_key(keys_path, "alice", now=utc_now())
    await proxy.app[WATCHER_KEY].reload(force=True)
    await assert_rejected(proxy, fake, bearer, error="key revoked")


async def test_password_key_works_with_basic_only(
    proxy, fake: FakeOllama, make_key: MakeKey
) -> None:
    """A chosen-password key works via Basic (name or id), never as Bearer."""
    created = make_key("human", password="correct horse battery")
    await proxy.app[WATCHER_KEY].reload(force=True)
    for user in ("human", created.record.id):
        resp = await proxy.get(
            "/api/tags",
            headers={"Authorization": basic_value(user, "correct horse battery")},
        )
        assert resp.status == HTTPStatus.OK
    fake.received.clear()
    await assert_rejected(
        proxy, fake, {"Authorization": basic_value("human", "wrong horse battery")}
    )
    await assert_rejected(
        proxy, fake, {"Authorization": "Bearer correct horse battery"}
    )


async def test_warm_cache_does_no_argon2_work(proxy, bearer) -> None:
    """After one successful verification, further requests skip argon2 entirely."""
    stats = proxy.app[VERIFIER_KEY].stats
    for _ in range(5):
        assert (await proxy.get("/api/tags", headers=bearer)).status == HTTPStatus.OK
    assert stats.argon2_verifications == 1
    assert stats.cache_hits == 4
    assert stats.cache_misses == 1


async def test_a_warm_cache_follows_the_record(
    proxy, key, token, audit_path: Path
) -> None:
    """A cache hit answers with the key as it is now (scopes) and as presented."""
    verifier = proxy.app[VERIFIER_KEY]
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await proxy.get("/api/tags", headers=bearer)).status == HTTPStatus.OK
    record = verifier.table.by_id[key.record.id]
    narrowed = dataclasses.replace(record, scopes=("inference",))
    verifier.set_table(verifier.table.replace(narrowed))
    resp = await proxy.get("/api/tags", headers=bearer)
    assert resp.status == HTTPStatus.FORBIDDEN
    assert "models:read" in (await resp.json())["error"]
    resp = await proxy.get("/api/tags", headers={"x-api-key": token})
    assert resp.status == HTTPStatus.FORBIDDEN
    assert (verifier.stats.argon2_verifications, verifier.stats.cache_hits) == (1, 2)
    records = await wait_audit(audit_path, 3)
    assert [r["scheme"] for r in records] == ["bearer", "bearer", "x-api-key"]


async def test_wrong_secret_is_rejected_by_fingerprint(
    proxy, fake: FakeOllama, key
) -> None:
    """A wrong token secret for a real id costs no argon2: its fingerprint differs."""
    stats = proxy.app[VERIFIER_KEY].stats
    wrong = {"Authorization": f"Bearer {format_token(key.record.id, 'B' * 43)}"}
    for _ in range(3):
        await assert_rejected(proxy, fake, wrong)
    assert (stats.argon2_verifications, stats.cache_hits) == (0, 0)


async def test_wrong_secret_is_never_cached(proxy, fake: FakeOllama, key) -> None:
    """Without a fingerprint (a hand-made record) failures cost argon2, uncached."""
    verifier = proxy.app[VERIFIER_KEY]
    record = verifier.table.by_id[key.record.id]
    verifier.set_table(
        verifier.table.replace(dataclasses.replace(record, fingerprint=None))
    )
    wrong = {"Authorization": f"Bearer {format_token(key.record.id, 'B' * 43)}"}
    for _ in range(3):
        await assert_rejected(proxy, fake, wrong)
    assert (verifier.stats.argon2_verifications, verifier.stats.cache_hits) == (3, 0)


async def test_cache_entry_dies_with_its_key(
    proxy, fake: FakeOllama, bearer, keys_path: Path
) -> None:
    """A cached credential stops working as soon as the reloaded store disables it."""
    assert (await proxy.get("/api/tags", headers=bearer)).status == HTTPStatus.OK
    revoke_key(keys_path, "alice", now=utc_now())
    await proxy.app[WATCHER_KEY].reload()
    fake.received.clear()
    await assert_rejected(proxy, fake, bearer, error="key revoked")


async def test_cache_ttl_expires(start_proxy, bearer) -> None:
    """With keys.cache_ttl 0 every request verifies again."""
    client = await start_proxy({"keys.cache_ttl": 0})
    for _ in range(3):
        assert (await client.get("/api/tags", headers=bearer)).status == HTTPStatus.OK
    assert client.app[VERIFIER_KEY].stats.argon2_verifications == 3


async def test_expiry_applies_to_cached_credentials(
    start_proxy, make_key: MakeKey, fake: FakeOllama
) -> None:
    """A key that expires while cached is refused from that moment (injected clock)."""
    created = make_key("short", expires_at=utc_now() + timedelta(hours=1))
    clock = WallClock()
    client = await start_proxy(clock=clock)
    headers = {"Authorization": f"Bearer {created.token}"}
    assert (await client.get("/api/tags", headers=headers)).status == HTTPStatus.OK
    clock.advance(hours=2)
    fake.received.clear()
    await assert_rejected(client, fake, headers, error="key expired")


async def test_outdated_hash_is_upgraded(
    start_proxy, keys_path: Path, key, bearer
) -> None:
    """A hash made with older parameters is upgraded after a successful verify."""
    old = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    secret = str(key.token).split("_", 2)[2]

    def downgrade(table: KeyTable):
        record = table.by_id[key.record.id]
        return table.replace(dataclasses.replace(record, hash=old.hash(secret))), None

    update_store(keys_path, downgrade)
    client = await start_proxy()
    assert (await client.get("/api/tags", headers=bearer)).status == HTTPStatus.OK
    await poll_until(lambda: client.app[VERIFIER_KEY].stats.rehashes)
    new_hash = read_store(keys_path).by_id[key.record.id].hash
    assert new_hash.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert (await client.get("/api/tags", headers=bearer)).status == HTTPStatus.OK


async def test_concurrent_first_uses_share_one_verification(proxy, bearer) -> None:
    """Many requests with a not-yet-cached token run argon2 once, not once each."""
    replies = await asyncio.gather(
        *(proxy.get("/api/tags", headers=bearer) for _ in range(10))
    )
    assert [r.status for r in replies] == [200] * 10
    stats = proxy.app[VERIFIER_KEY].stats
    assert stats.argon2_verifications == 1
    assert stats.shared_verifications + stats.cache_hits == 9
    assert stats.shared_verifications >= 1


async def test_a_waiter_leaving_does_not_cancel_the_check(proxy, key, token) -> None:
    """If the first requester goes away mid-check, the others still get their answer."""
    verifier = proxy.app[VERIFIER_KEY]
    slow_hash(verifier, key.record.id, token.split("_", 2)[2])
    headers = {"Authorization": f"Bearer {token}"}
    first = asyncio.ensure_future(proxy.get("/api/tags", headers=headers))
    await poll_until(lambda: verifier.pending, within=1.0, interval=0.005)
    assert verifier.pending == 1
    second = asyncio.ensure_future(proxy.get("/api/tags", headers=headers))
    await poll_until(
        lambda: verifier.stats.shared_verifications, within=1.0, interval=0.005
    )
    first.cancel()
    reply = await second
    assert reply.status == 200
    assert (
        verifier.stats.argon2_verifications,
        verifier.stats.shared_verifications,
    ) == (1, 1)


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
