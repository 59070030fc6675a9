"""state.connection: clients from the settings, the password from the environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from authproxy.config.load import load_config
from authproxy.config.state import StateConfig
from authproxy.errors import KeyStoreError
from authproxy.state.connection import (
    StateNames,
    async_client,
    sync_client,
    unreachable,
)
from tests.support.redis import RedisServer, free_port

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server that requires a password."""
    server = RedisServer(tmp_path / "locked", password=PASSWORD)
    server.start()
    yield server
    server.close()


def _state(url: str, password_env: str | None = None) -> StateConfig:
    overrides = {"state.backend": "redis", "state.redis_url": url}
    if password_env:
        overrides["state.redis_password_env"] = password_env
    return load_config(None, overrides).state


def test_the_password_comes_from_the_named_variable(locked_redis: RedisServer) -> None:
    """With the variable set, both clients authenticate."""
    state = _state(locked_redis.url, "APX_REDIS_PW")
    client = sync_client(state, {"APX_REDIS_PW": PASSWORD})
    assert client.ping() is True
    client.close()


async def test_the_asyncio_client_authenticates_too(locked_redis: RedisServer) -> None:
    """The server's asyncio client reads the same variable."""
    state = _state(locked_redis.url, "APX_REDIS_PW")
    client = async_client(state, {"APX_REDIS_PW": PASSWORD})
    assert await client.ping() is True
    await client.aclose()


def test_an_unset_password_variable_is_an_error() -> None:
    """A named but unset variable stops with its name, before any connection."""
    state = _state("redis://127.0.0.1:1/0", "APX_REDIS_PW")
    with pytest.raises(KeyStoreError, match="APX_REDIS_PW is not set"):
        sync_client(state, {})


def test_a_wrong_password_says_authentication_failed(locked_redis: RedisServer) -> None:
    """The message points at the setting, and holds neither URL nor password."""
    client = sync_client(_state(locked_redis.url, "PW"), {"PW": "wrong-password"})
    with pytest.raises(Exception) as caught:  # noqa: PT011 - redis-py's own error
        client.ping()
    message = str(unreachable(caught.value))
    assert "authentication failed" in message
    assert "wrong-password" not in message
    assert str(locked_redis.port) not in message


def test_an_unreachable_server_says_cannot_connect() -> None:
    """Nothing listening: "cannot connect", without the address."""
    port = free_port()
    client = sync_client(_state(f"redis://127.0.0.1:{port}/0"))
    with pytest.raises(Exception) as caught:  # noqa: PT011 - redis-py's own error
        client.ping()
    assert str(unreachable(caught.value)) == (
        "key store in Redis unavailable: cannot connect"
    )


def test_the_file_backend_has_no_client() -> None:
    """Asking for a client with the file backend is refused."""
    with pytest.raises(KeyStoreError, match="not redis"):
        sync_client(load_config().state)


def test_every_name_is_under_the_prefix() -> None:
    """Several deployments can share one Redis under different prefixes."""
    names = StateNames("team-a:")
    keys = [names.records, names.version, names.feed, names.signing]
    assert all(k.startswith("team-a:keys:") for k in keys)
    assert len(set(keys)) == 4
