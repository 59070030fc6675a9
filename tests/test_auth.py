"""Authentication through the real app: the 401 matrix, every scheme, the cache."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import re
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path

import aiohttp
import pytest
from argon2 import PasswordHasher
from multidict import CIMultiDict

from authproxy.keys.lifecycle import revoke_key
from authproxy.keys.store import KeyTable, format_token, read_store, update_store
from authproxy.times import utc_now
from authproxy.web.appkeys import VERIFIER_KEY, WATCHER_KEY
from tests.conftest import MakeKey, closed_port, poll_until
from tests.support.fake_ollama.server import FakeOllama

CHALLENGES = ['Basic realm="authproxy", charset="UTF-8"', 'Bearer realm="authproxy"']


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def assert_rejected(proxy, fake: FakeOllama, headers, path="/api/tags") -> None:
    resp = await proxy.get(path, headers=headers)
    assert resp.status == HTTPStatus.UNAUTHORIZED
    assert await resp.read() == b'{"error":"unauthorized"}'
    assert resp.headers.getall("WWW-Authenticate") == CHALLENGES
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert fake.received == []


@pytest.fixture
def bad_headers(key, make_key: MakeKey) -> dict[str, list[tuple[str, str]]]:
    """Every failure kind, keyed by a readable id."""
    token = key.token
    assert token is not None
    key_id, secret = key.record.id, token.split("_", 2)[2]
    expired = make_key("old", expires_at=utc_now() + timedelta(seconds=1))
    other = make_key("bob")
    wrong_secret = format_token(key_id, "A" * 43)
    unknown_id = format_token("aaaaaaaaaaaa", secret)
    return {
        "missing": [],
        "empty-bearer": [("Authorization", "Bearer ")],
        "bearer-garbage": [("Authorization", "Bearer hello")],
        "bearer-unknown-id": [("Authorization", f"Bearer {unknown_id}")],
        "bearer-wrong-secret": [("Authorization", f"Bearer {wrong_secret}")],
        "bearer-truncated": [("Authorization", f"Bearer {token[:-1]}")],
        "bearer-expired": [("Authorization", f"Bearer {expired.token}")],
        "unsupported-scheme": [("Authorization", f"Digest {token}")],
        "basic-bad-base64": [("Authorization", "Basic !!!notbase64")],
        "basic-no-colon": [
            ("Authorization", "Basic " + base64.b64encode(token.encode()).decode())
        ],
        "basic-empty-password": [("Authorization", basic("alice", ""))],
        "basic-wrong-user": [("Authorization", basic("bob", token))],
        "basic-unknown-user": [("Authorization", basic("nobody", token))],
        "basic-other-keys-token": [("Authorization", basic("alice", str(other.token)))],
        "basic-wrong-secret": [("Authorization", basic("alice", wrong_secret))],
        "x-api-key-wrong": [("x-api-key", wrong_secret)],
        "x-api-key-empty": [("x-api-key", "")],
        "two-authorization": [
            ("Authorization", f"Bearer {token}"),
            ("Authorization", f"Bearer {token}"),
        ],
        "two-api-keys": [("x-api-key", token), ("x-api-key", token)],
        "over-long": [("Authorization", "Bearer " + "a" * 5000)],
        "control-char": [("Authorization", f"Bearer {token}\x01")],
        "non-ascii": [("Authorization", f"Bearer {token}é")],
        "basic-nul": [("Authorization", basic("alice\x00", token))],
    }


FAILURES = [
    "missing",
    "empty-bearer",
    "bearer-garbage",
    "bearer-unknown-id",
    "bearer-wrong-secret",
    "bearer-truncated",
    "bearer-expired",
    "unsupported-scheme",
    "basic-bad-base64",
    "basic-no-colon",
    "basic-empty-password",
    "basic-wrong-user",
    "basic-unknown-user",
    "basic-other-keys-token",
    "basic-wrong-secret",
    "x-api-key-wrong",
    "x-api-key-empty",
    "two-authorization",
    "two-api-keys",
    "over-long",
    "control-char",
    "non-ascii",
    "basic-nul",
]


@pytest.mark.parametrize("case", FAILURES)
async def test_every_failure_gets_the_same_401(
    proxy, fake: FakeOllama, bad_headers, case, secrets_seen
) -> None:
    """Missing, malformed, unknown, wrong, expired: one 401, nothing forwarded."""
    if case == "bearer-expired":
        await asyncio.sleep(1.1)
    headers = bad_headers[case]
    if case in {"non-ascii", "control-char"}:
        await _raw_request(proxy, headers, fake)
        return
    await assert_rejected(proxy, fake, CIMultiDict(headers))


async def _raw_request(proxy, headers, fake: FakeOllama) -> None:
    """Send bytes aiohttp's client would refuse to encode."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    lines = [b"GET /api/tags HTTP/1.1", b"Host: x", b"Connection: close"]
    lines += [f"{k}: {v}".encode() for k, v in headers]
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
    await writer.drain()
    reply = await reader.read()
    writer.close()
    # A control character is refused by the HTTP parser itself (HTTP/1.0 reply),
    # which still answers with the same 401 and never echoes the bytes.
    assert re.match(rb"HTTP/1\.[01] 401 ", reply)
    assert reply.endswith(b'{"error":"unauthorized"}')
    assert reply.count(b"WWW-Authenticate") == 2
    assert fake.received == []


async def test_disabled_key_is_rejected(
    proxy, fake: FakeOllama, key, keys_path: Path, bearer
) -> None:
    """A key revoked in the store is rejected like any other failure."""
    revoke_key(keys_path, "alice", now=utc_now())
    await proxy.app[WATCHER_KEY].reload(force=True)
    await assert_rejected(proxy, fake, bearer)


@pytest.mark.parametrize(
    "scheme", ["bearer", "basic-name", "basic-id", "x-api-key", "url-userinfo"]
)
async def test_each_scheme_authenticates(proxy, fake: FakeOllama, key, scheme) -> None:
    """Bearer, Basic (name or id as username), x-api-key and URL userinfo all work."""
    token = key.token
    headers = {
        "bearer": {"Authorization": f"Bearer {token}"},
        "basic-name": {"Authorization": basic("alice", token)},
        "basic-id": {"Authorization": basic(key.record.id, token)},
        "x-api-key": {"x-api-key": token},
        "url-userinfo": {},
    }[scheme]
    url = proxy.make_url("/api/tags")
    if scheme == "url-userinfo":
        url = url.with_user("alice").with_password(token)
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers) as resp,
    ):
        assert resp.status == HTTPStatus.OK
        assert (await resp.json())["models"]
    assert "Authorization" not in fake.last.headers
    assert "x-api-key" not in fake.last.headers


async def test_password_key_works_with_basic_only(
    proxy, fake: FakeOllama, make_key: MakeKey
) -> None:
    """A chosen-password key works via Basic (name or id), never as Bearer."""
    created = make_key("human", password="correct horse battery")
    await proxy.app[WATCHER_KEY].reload(force=True)
    for user in ("human", created.record.id):
        resp = await proxy.get(
            "/api/tags", headers={"Authorization": basic(user, "correct horse battery")}
        )
        assert resp.status == HTTPStatus.OK
    fake.received.clear()
    await assert_rejected(
        proxy, fake, {"Authorization": basic("human", "wrong horse battery")}
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
    await assert_rejected(proxy, fake, bearer)


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
    now = [utc_now()]
    client = await start_proxy(clock=lambda: now[0])
    headers = {"Authorization": f"Bearer {created.token}"}
    assert (await client.get("/api/tags", headers=headers)).status == HTTPStatus.OK
    now[0] += timedelta(hours=2)
    fake.received.clear()
    await assert_rejected(client, fake, headers)


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


async def test_argon2_workers_default_to_the_usable_cpus(start_proxy) -> None:
    """Without keys.verify_workers, one argon2 thread per CPU this process may use."""
    client = await start_proxy({})
    assert client.app[VERIFIER_KEY].workers == len(os.sched_getaffinity(0))
    client = await start_proxy({"keys.verify_workers": 3})
    assert client.app[VERIFIER_KEY].workers == 3


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
    verifier = client.app[VERIFIER_KEY]
    slow = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1)
    record = verifier.table.by_id[key.record.id]
    slow_record = dataclasses.replace(record, hash=slow.hash("x"), fingerprint=None)
    verifier.set_table(verifier.table.replace(slow_record))
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


async def test_health_endpoints_need_no_credentials(proxy, fake: FakeOllama) -> None:
    """/healthz and /readyz answer without credentials; /readyz asks the upstream."""
    resp = await proxy.get("/healthz")
    assert resp.status == HTTPStatus.OK
    assert await resp.json() == {"status": "ok"}
    resp = await proxy.get("/readyz")
    assert resp.status == HTTPStatus.OK
    assert await resp.json() == {"status": "ready"}
    assert [r.path_qs for r in fake.received] == ["/"]


async def test_readyz_reports_a_dead_upstream(start_proxy, key) -> None:
    """/readyz is 503 while the upstream does not answer."""
    client = await start_proxy({"upstream.url": f"http://127.0.0.1:{closed_port()}"})
    resp = await client.get("/readyz")
    assert resp.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert await resp.json() == {"status": "unready", "error": "upstream not answering"}
    assert (await client.get("/healthz")).status == HTTPStatus.OK


async def test_other_methods_on_health_paths_are_proxied_with_auth(
    proxy, fake: FakeOllama
) -> None:
    """Only GET/HEAD /healthz are public; POST /healthz needs a key like any route."""
    resp = await proxy.post("/healthz")
    assert resp.status == HTTPStatus.UNAUTHORIZED
    assert fake.received == []


async def test_auth_failures_are_logged_without_secrets(
    proxy, fake: FakeOllama, key, log_capture
) -> None:
    """A failure is logged with its reason and presented key id, never the secret."""
    wrong = format_token(key.record.id, "C" * 43)
    await assert_rejected(proxy, fake, {"Authorization": f"Bearer {wrong}"})
    events = log_capture.events("auth_failed")
    assert events[-1]["reason"] == "wrong_secret"
    assert events[-1]["key_id"] == key.record.id
    assert events[-1]["scheme"] == "bearer"
    assert "C" * 43 not in log_capture.stream.getvalue()


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
    slow = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1)
    record = verifier.table.by_id[key.record.id]
    secret = token.split("_", 2)[2]
    verifier.set_table(
        verifier.table.replace(dataclasses.replace(record, hash=slow.hash(secret)))
    )
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
