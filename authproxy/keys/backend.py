"""Where keys live, by ``state.backend``: the YAML file, or Redis.

The CLI, the admin API and the server ask this module for the store they
write to and for the JWT signing keys that go with it, so a command run with
the same settings as a replica changes what the replica serves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from authproxy.config.model import Config, signing_key_file
from authproxy.keys.redisstore import RedisKeyStore
from authproxy.keys.signing import SigningKeys, load_signing_keys, rotate_signing_key
from authproxy.keys.store import StoreRef
from authproxy.state.connection import StateNames, sync_client


@dataclass(frozen=True, slots=True)
class KeyBackend:
    """The store to read and write, and the JWT signing keys beside it."""

    store: StoreRef
    load_signing: Callable[[], SigningKeys]
    rotate_signing: Callable[[datetime], SigningKeys]

    @property
    def redis(self) -> RedisKeyStore | None:
        """The Redis store, or ``None`` for the file backend."""
        return self.store if isinstance(self.store, RedisKeyStore) else None


def key_backend(config: Config, environ: Mapping[str, str] | None = None) -> KeyBackend:
    """Return the key backend ``config`` names.

    ``jwt.key_env`` keeps the signing keys in the environment with either
    backend; otherwise they live beside the keys (a file, or Redis).

    Raises:
        KeyStoreError: the Redis password variable is named but unset.
    """
    jwt, jwt_path = config.jwt, signing_key_file(config)
    if config.state.backend != "redis":
        return KeyBackend(
            Path(config.keys.file),
            lambda: load_signing_keys(jwt, jwt_path),
            lambda now: rotate_signing_key(jwt, jwt_path, now),
        )
    store = RedisKeyStore(
        sync_client(config.state, environ), StateNames(config.state.prefix)
    )
    if jwt.key_env:
        return KeyBackend(
            store,
            lambda: load_signing_keys(jwt, jwt_path),
            lambda now: rotate_signing_key(jwt, jwt_path, now),
        )
    return KeyBackend(store, store.load_signing, store.rotate_signing)
