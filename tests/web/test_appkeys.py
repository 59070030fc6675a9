"""web.appkeys: the typed keys the proxy application holds while it serves."""

from __future__ import annotations

import typing
from typing import Any

from aiohttp import web

from authproxy.keys.feed import KeyFeed
from authproxy.keys.watch import KeyStoreWatcher
from authproxy.limits.admission import LocalAdmission
from authproxy.limits.shared import SharedAdmission
from authproxy.web import appkeys
from authproxy.web.appkeys import (
    ADMISSION_KEY,
    FLEET_USAGE_KEY,
    LIFECYCLE_KEY,
    STREAMS_KEY,
    WATCHER_KEY,
)
from tests.support.fake_ollama.server import FakeOllama
from tests.support.payloads import CHAT
from tests.support.polling import poll_until

APP_KEYS = [v for v in vars(appkeys).values() if isinstance(v, web.AppKey)]
# What the keys declared as unions hold: the file's or Redis's version.
UNIONS: dict[web.AppKey[Any], Any] = {
    WATCHER_KEY: KeyStoreWatcher | KeyFeed,
    ADMISSION_KEY: LocalAdmission | SharedAdmission,
}
# Keys only a proxy with state.backend redis holds (tests/admin/test_usage.py).
REDIS_ONLY = {FLEET_USAGE_KEY}


async def test_the_running_app_holds_every_declared_key(proxy) -> None:
    """Each application key appkeys declares is set, to a value of its type."""
    assert len(APP_KEYS) == 17
    for key in APP_KEYS:
        if key in REDIS_ONLY:
            assert key not in proxy.app, key
            continue
        assert key in proxy.app, key
        declared = key._t  # the type the key was declared with
        value = proxy.app[key]
        if key in UNIONS:  # declared as a union, which AppKey does not keep
            assert isinstance(value, UNIONS[key]), key
        elif declared is None:  # the clock: a callable type alias
            assert callable(value)
        else:
            assert isinstance(value, typing.get_origin(declared) or declared), key


async def test_open_streams_are_tracked(proxy, bearer, fake: FakeOllama) -> None:
    """A response being streamed is in STREAMS_KEY until it ends."""
    fake.behaviour.tokens = [f"t{i}" for i in range(20)]
    fake.behaviour.chunk_delay = 0.05
    streams = proxy.app[STREAMS_KEY]
    resp = await proxy.post("/api/chat", json=CHAT, headers=bearer)
    await resp.content.readline()
    assert len(streams) == 1
    await resp.read()
    await poll_until(lambda: len(streams) == 0)
    assert len(streams) == 0


async def test_the_lifecycle_says_when_the_server_stops(proxy) -> None:
    """LIFECYCLE_KEY.stopping is false while serving and true once shutdown runs."""
    lifecycle = proxy.app[LIFECYCLE_KEY]
    assert (await proxy.get("/healthz")).status == 200
    assert lifecycle.stopping is False
    await proxy.close()
    assert lifecycle.stopping is True
