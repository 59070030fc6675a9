"""keys.backend: the store and the signing keys that ``state.backend`` names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from authproxy.config.load import load_config
from authproxy.keys.backend import key_backend
from authproxy.keys.redisstore import RedisKeyStore
from authproxy.times import utc_now


def test_the_file_backend_is_the_key_file(overrides: dict[str, Any]) -> None:
    """By default the store is keys.file and the signing keys sit beside it."""
    backend = key_backend(load_config(None, overrides))
    assert backend.store == Path(overrides["keys.file"])
    assert backend.redis is None
    keys = backend.load_signing()
    assert Path(overrides["keys.file"]).with_name("jwt-signing.yaml").exists()
    assert backend.rotate_signing(utc_now()).keys[1] == keys.current


def test_the_redis_backend_keeps_signing_keys_in_redis(
    redis_overrides: dict[str, Any],
) -> None:
    """With redis, keys and signing keys both live there; no file is written."""
    backend = key_backend(load_config(None, redis_overrides))
    assert isinstance(backend.store, RedisKeyStore)
    assert backend.redis is backend.store
    keys = backend.load_signing()
    assert backend.rotate_signing(utc_now()).keys[1] == keys.current
    assert not Path(redis_overrides["keys.file"]).with_name("jwt-signing.yaml").exists()
    assert backend.redis.client.exists(backend.redis.names.signing) == 1


def test_signing_keys_from_the_environment_stay_there(
    redis_overrides: dict[str, Any], monkeypatch: Any
) -> None:
    """jwt.key_env wins over either backend: the secret is the variable's."""
    monkeypatch.setenv("APX_JWT_SECRET", "s" * 40)
    config = load_config(None, {**redis_overrides, "jwt.key_env": "APX_JWT_SECRET"})
    backend = key_backend(config)
    assert backend.load_signing().current.secret == b"s" * 40
    assert backend.redis is not None
    assert backend.redis.client.exists(backend.redis.names.signing) == 0
