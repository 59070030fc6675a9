"""keys.feed: a replica's copy of the Redis key table, fresh or refusing to serve."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from authproxy.config.load import load_config
from authproxy.config.model import Config
from authproxy.keys.feed import NOT_INITIALISED, KeyFeed
from authproxy.keys.lifecycle import KeySpec, create_key, revoke_key
from authproxy.keys.redisstore import RedisKeyStore
from authproxy.keys.signing import SigningKeys
from authproxy.keys.store import KeyTable, make_hasher
from authproxy.state.connection import StateNames, async_client, sync_client
from authproxy.times import utc_now
from tests.support.logs import Secrets
from tests.support.polling import poll_until
from tests.support.redis import RedisServer

STALE_AFTER = 0.3


@pytest.fixture
def redis_config(redis_overrides: dict[str, Any]) -> Config:
    return load_config(None, {**redis_overrides, "state.stale_after": STALE_AFTER})


@pytest.fixture
def store(redis_config: Config) -> RedisKeyStore:
    state = redis_config.state
    return RedisKeyStore(sync_client(state), StateNames(state.prefix))


class Follower:
    """A feed and what it has put in service."""

    def __init__(self, config: Config, store: RedisKeyStore) -> None:
        self.tables: list[KeyTable] = []
        self.signing: list[SigningKeys] = []
        self.feed = KeyFeed(
            async_client(config.state),
            StateNames(config.state.prefix),
            self.tables.append,
            stale_after=config.state.stale_after,
            signing=store.load_signing,
            on_signing=self.signing.append,
        )

    def names(self) -> list[str]:
        return [r.name for r in self.feed.table.records]


@pytest.fixture
async def follower(
    redis_config: Config, store: RedisKeyStore
) -> AsyncIterator[Follower]:
    """A feed loaded from Redis and following it in a task."""
    follower = Follower(redis_config, store)
    await follower.feed.load_initial()
    task = asyncio.create_task(follower.feed.run())
    yield follower
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await follower.feed.client.aclose()


def _create(store: RedisKeyStore, config: Config, name: str, secrets: Secrets) -> Any:
    created = create_key(
        store, make_hasher(config.keys.argon2), KeySpec(name=name), now=utc_now()
    )
    secrets.add(created.token, created.record.hash)
    return created


async def test_a_store_not_yet_written_is_not_fresh(follower: Follower) -> None:
    """No store in Redis: the replica says so instead of serving an empty table."""
    assert not follower.feed.fresh()
    assert follower.feed.state() == NOT_INITIALISED


async def test_changes_from_anywhere_are_followed(
    follower: Follower,
    store: RedisKeyStore,
    redis_config: Config,
    secrets_seen: Secrets,
) -> None:
    """A create and a revoke written by another process arrive within a second."""
    _create(store, redis_config, "alice", secrets_seen)
    assert await poll_until(lambda: follower.names() == ["alice"], within=1.0)
    assert await poll_until(follower.feed.fresh, within=1.0)
    await asyncio.to_thread(revoke_key, store, "alice", now=utc_now())

    def revoked() -> bool:
        return follower.feed.table.by_name["alice"].revoked_at is not None

    assert await poll_until(revoked, within=1.0)
    assert follower.tables[-1] is follower.feed.table


async def test_a_replica_that_hears_nothing_goes_stale_and_recovers(
    follower: Follower,
    store: RedisKeyStore,
    redis_config: Config,
    redis_server: RedisServer,
    secrets_seen: Secrets,
) -> None:
    """Redis stopped: not fresh within stale_after; started again: fresh, caught up."""
    _create(store, redis_config, "alice", secrets_seen)
    assert await poll_until(follower.feed.fresh, within=1.0)
    redis_server.stop()
    assert await poll_until(
        lambda: not follower.feed.fresh(), within=STALE_AFTER + 0.25
    )
    assert follower.feed.state() == f"no word from Redis for {STALE_AFTER:g} s"
    await asyncio.to_thread(redis_server.start)
    _create(store, redis_config, "bob", secrets_seen)
    assert await poll_until(follower.feed.fresh, within=5.0)
    assert await poll_until(lambda: follower.names() == ["alice", "bob"], within=1.0)
    assert follower.feed.failures > 0


async def test_an_emptied_redis_is_noticed(
    follower: Follower,
    store: RedisKeyStore,
    redis_config: Config,
    secrets_seen: Secrets,
) -> None:
    """FLUSHALL behind the replica's back: the store is gone, the replica stops."""
    _create(store, redis_config, "alice", secrets_seen)
    assert await poll_until(follower.feed.fresh, within=1.0)
    store.client.flushall()
    assert await poll_until(lambda: not follower.feed.fresh(), within=1.0)
    assert follower.feed.state() == NOT_INITIALISED


async def test_a_gap_in_the_stream_reloads_the_whole_table(
    redis_config: Config, store: RedisKeyStore, secrets_seen: Secrets
) -> None:
    """Entries trimmed away before a replica read them: it reloads everything."""
    _create(store, redis_config, "a", secrets_seen)
    follower = Follower(redis_config, store)
    await follower.feed.load_initial()
    for name in ("b", "c", "d"):
        _create(store, redis_config, name, secrets_seen)
    store.client.xtrim(store.names.feed, maxlen=1, approximate=False)
    reloads = follower.feed.reloads
    assert await follower.feed.reload(force=True) is True
    assert follower.names() == ["a", "b", "c", "d"]
    assert follower.feed.reloads == reloads + 1
    await follower.feed.client.aclose()


async def test_a_signing_key_rotation_reaches_the_replica(
    follower: Follower,
    store: RedisKeyStore,
    redis_config: Config,
    secrets_seen: Secrets,
) -> None:
    """The replica loads the signing keys at start and again after a rotation."""
    _create(store, redis_config, "alice", secrets_seen)
    assert await poll_until(follower.feed.fresh, within=1.0)
    rotated = await asyncio.to_thread(store.rotate_signing, utc_now())
    assert await poll_until(lambda: follower.signing[-1] == rotated, within=1.0)
