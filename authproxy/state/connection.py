"""Redis clients from the ``state`` settings; the password comes from the environment.

The server follows the key table with redis-py's asyncio client; the CLI and
the writes the server runs in its executor use the blocking client. Both parse
replies with hiredis when it is installed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import redis
import redis.asyncio

from authproxy.config.state import StateConfig
from authproxy.errors import KeyStoreError, KeyStoreUnavailableError

CONNECT_TIMEOUT: Final = 2.0
# Above the feed's longest blocking read (see keys.feed), so only a hung
# server times out.
SOCKET_TIMEOUT: Final = 5.0

__all__ = ["RedisError", "StateNames", "async_client", "sync_client"]

RedisError = redis.RedisError


@dataclass(frozen=True, slots=True)
class StateNames:
    """The Redis keys of one deployment, all under ``state.prefix``."""

    prefix: str

    @property
    def records(self) -> str:
        """Hash: key id -> the record as JSON."""
        return f"{self.prefix}keys:records"

    @property
    def version(self) -> str:
        """Counter: one more on every change; its presence marks a store."""
        return f"{self.prefix}keys:version"

    @property
    def feed(self) -> str:
        """Stream: one entry per change, naming what changed."""
        return f"{self.prefix}keys:feed"

    @property
    def signing(self) -> str:
        """String: the JWT signing keys as JSON."""
        return f"{self.prefix}keys:signing"

    def idempotent(self, digest: str) -> str:
        """String: one admin action's claim or sealed reply (admin.sharedidem)."""
        return f"{self.prefix}admin:idempotency:{digest}"


def _options(state: StateConfig, environ: Mapping[str, str] | None) -> dict[str, Any]:
    """Return the client options shared by both clients.

    Raises:
        KeyStoreError: the backend is not redis, or the password variable is unset.
    """
    if state.backend != "redis" or not state.redis_url:
        raise KeyStoreError("state.backend is not redis")
    env = os.environ if environ is None else environ
    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
        "decode_responses": True,
        "health_check_interval": 0,
    }
    if state.redis_password_env:
        password = env.get(state.redis_password_env)
        if not password:
            raise KeyStoreError(
                f"state.redis_password_env: environment variable "
                f"{state.redis_password_env} is not set"
            )
        options["password"] = password
    return options


def sync_client(
    state: StateConfig, environ: Mapping[str, str] | None = None
) -> redis.Redis:
    """Return a blocking client (the CLI, the admin API's executor writes).

    Raises:
        KeyStoreError: see ``_options``.
    """
    url = state.redis_url or ""
    return redis.Redis.from_url(url, **_options(state, environ))


def async_client(
    state: StateConfig, environ: Mapping[str, str] | None = None
) -> redis.asyncio.Redis:
    """Return an asyncio client (the server's change feed).

    Raises:
        KeyStoreError: see ``_options``.
    """
    url = state.redis_url or ""
    return redis.asyncio.Redis.from_url(url, **_options(state, environ))


def unreachable(err: BaseException) -> KeyStoreUnavailableError:
    """Return the error a command shows when Redis cannot be used (no URL in it)."""
    if isinstance(err, redis.AuthenticationError):
        reason = "authentication failed (check state.redis_password_env)"
    elif isinstance(err, redis.ConnectionError | redis.TimeoutError | OSError):
        reason = "cannot connect"
    else:
        reason = "the server refused the command"
    return KeyStoreUnavailableError(f"key store in Redis unavailable: {reason}")
