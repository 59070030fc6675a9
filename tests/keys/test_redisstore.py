"""keys.redisstore: the key store in a real Redis, written atomically and versioned."""

from __future__ import annotations

import concurrent.futures
from datetime import timedelta
from typing import Any

import pytest

from authproxy.config.load import load_config
from authproxy.config.model import Config
from authproxy.errors import KeyStoreError
from authproxy.keys.lifecycle import (
    KeySpec,
    create_key,
    revoke_key,
    rotate_key,
    update_key,
)
from authproxy.keys.redisstore import RedisKeyStore
from authproxy.keys.store import KeyTable, make_hasher
from authproxy.state.connection import StateNames, sync_client
from authproxy.times import utc_now
from tests.support.logs import Secrets
from tests.support.redis import free_port


@pytest.fixture
def redis_config(redis_overrides: dict[str, Any]) -> Config:
    return load_config(None, redis_overrides)


@pytest.fixture
def store(redis_config: Config) -> RedisKeyStore:
    state = redis_config.state
    return RedisKeyStore(sync_client(state), StateNames(state.prefix))


def _create(store: RedisKeyStore, config: Config, name: str, secrets: Secrets) -> Any:
    created = create_key(
        store, make_hasher(config.keys.argon2), KeySpec(name=name), now=utc_now()
    )
    secrets.add(created.token, created.record.hash)
    return created


def _feed(store: RedisKeyStore) -> list[dict[str, str]]:
    entries: Any = store.client.xrange(store.names.feed)
    return [fields for _, fields in entries]


def test_a_store_never_written_is_empty_and_unversioned(store: RedisKeyStore) -> None:
    """Before the first write there is no version: replicas can tell 'no store'."""
    assert store.read() == KeyTable()
    assert store.version() is None


def test_every_change_counts_the_version_up_and_names_what_changed(
    store: RedisKeyStore, redis_config: Config, secrets_seen: Secrets
) -> None:
    """Create, update, rotate and revoke: one feed entry each, with the new version."""
    created = _create(store, redis_config, "alice", secrets_seen)
    key_id = created.record.id
    now = utc_now()
    update_key(store, "alice", {"note": "n"}, now=now)
    rotated = rotate_key(
        store, make_hasher(redis_config.keys.argon2), key_id, grace=timedelta(), now=now
    )
    secrets_seen.add(rotated.token)
    revoke_key(store, "alice", now=now)
    assert store.version() == 4
    assert _feed(store) == [
        {"v": str(v), "op": "keys", "ids": key_id} for v in range(1, 5)
    ]
    record = store.read().by_id[key_id]
    assert record.revoked_at is not None
    assert record.note == "n"


def test_a_change_that_changes_nothing_writes_nothing(
    store: RedisKeyStore, redis_config: Config, secrets_seen: Secrets
) -> None:
    """Revoking a revoked key leaves the version and the feed alone."""
    _create(store, redis_config, "alice", secrets_seen)
    revoke_key(store, "alice", now=utc_now())
    _, changed = revoke_key(store, "alice", now=utc_now())
    assert changed is False
    assert store.version() == 2


def test_concurrent_writers_lose_no_update(
    store: RedisKeyStore, redis_config: Config, secrets_seen: Secrets
) -> None:
    """Eight threads creating keys at once: every key is there, every version used."""
    names = [f"k{i}" for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: _create(store, redis_config, n, secrets_seen), names))
    assert sorted(r.name for r in store.read().records) == names
    assert store.version() == len(names)
    assert sorted(int(f["v"]) for f in _feed(store)) == list(range(1, 9))


def test_a_refused_change_writes_nothing(
    store: RedisKeyStore, redis_config: Config, secrets_seen: Secrets
) -> None:
    """A duplicate name is refused as with the file, and the store is unchanged."""
    _create(store, redis_config, "alice", secrets_seen)
    with pytest.raises(KeyStoreError, match="already exists"):
        _create(store, redis_config, "alice", secrets_seen)
    assert store.version() == 1


def test_keys_list_oldest_first(
    store: RedisKeyStore, redis_config: Config, secrets_seen: Secrets
) -> None:
    """The hash has no order; the table keeps creation order, as the file does."""
    for name in ("c", "a", "b"):
        _create(store, redis_config, name, secrets_seen)
    assert [r.name for r in store.read().records] == ["c", "a", "b"]


def test_an_invalid_record_is_refused_without_quoting_it(
    store: RedisKeyStore,
) -> None:
    """A hand-written record is checked like a file's; the hash is never echoed."""
    bad = '{"id": "aaaaaaaaaaaa", "name": "x", "hash": "$argon2id$secret-ish"}'
    store.client.hset(store.names.records, "aaaaaaaaaaaa", bad)
    with pytest.raises(KeyStoreError) as caught:
        store.read()
    assert "record aaaaaaaaaaaa" in str(caught.value)
    assert "secret-ish" not in str(caught.value)
    store.client.hset(store.names.records, "aaaaaaaaaaaa", "{not json")
    with pytest.raises(KeyStoreError, match="not JSON"):
        store.read()


def test_signing_keys_are_made_once_and_rotate_with_the_feed(
    store: RedisKeyStore,
) -> None:
    """The first load creates a key; a rotation puts a new one first, keeps the old."""
    first = store.load_signing()
    assert store.load_signing() == first
    rotated = store.rotate_signing(utc_now())
    assert rotated.keys[1] == first.current
    assert rotated.current != first.current
    assert store.load_signing() == rotated
    assert [f["op"] for f in _feed(store)] == ["signing", "signing"]


def test_an_unreachable_redis_is_a_key_store_error(
    redis_overrides: dict[str, Any],
) -> None:
    """A command against a Redis that is down says so, without the address."""
    state = load_config(
        None, {**redis_overrides, "state.redis_url": f"redis://127.0.0.1:{free_port()}"}
    ).state
    down = RedisKeyStore(sync_client(state), StateNames(state.prefix))
    with pytest.raises(KeyStoreError, match="unavailable: cannot connect"):
        down.read()
