"""keys.signing: JWT signing keys from a file or the environment, rotation."""

from __future__ import annotations

import asyncio
import json
import stat
from datetime import timedelta
from pathlib import Path

import jwt
import jwt as pyjwt
import pytest

from authproxy.cli.main import main
from authproxy.config.model import JWTConfig
from authproxy.errors import KeyStoreError
from authproxy.keys.signing import (
    TokenError,
    decode,
    load_signing_keys,
    looks_like_jwt,
    mint,
    rotate_signing_key,
)
from authproxy.times import utc_now
from authproxy.web.appkeys import WATCHER_KEY
from tests.support.admin import Stack

SECRET = "s" * 40


def test_file_is_created_0600_on_first_use(tmp_path: Path) -> None:
    """Without a key file, one is created with a single fresh key, mode 0600."""
    path = tmp_path / "keys" / "jwt-signing.yaml"
    keys = load_signing_keys(JWTConfig(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(keys.keys) == 1
    assert load_signing_keys(JWTConfig(), path).current.kid == keys.current.kid


def test_missing_file_that_cannot_be_made_names_the_fix(tmp_path: Path) -> None:
    """A signing key file that is missing and cannot be created names the settings."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    path = blocker / "jwt-signing.yaml"
    with pytest.raises(KeyStoreError) as info:
        load_signing_keys(JWTConfig(), path)
    message = str(info.value)
    assert message.startswith(f"{path}: no JWT signing key file, and none can be ")
    assert f"({path}.lock: cannot lock: File exists)" in message
    assert message.endswith(
        "; set jwt.key_file to a file from a Secret or on a writable volume, "
        "or jwt.key_env (see docs/deployment.md)"
    )


def test_existing_file_is_read_without_writing(tmp_path: Path) -> None:
    """A key file that exists is only read: no lock file, no rewrite (read-only OK)."""
    path = tmp_path / "jwt-signing.yaml"
    first = load_signing_keys(JWTConfig(), path)
    (tmp_path / "jwt-signing.yaml.lock").unlink()
    before = path.stat()
    again = load_signing_keys(JWTConfig(), path)
    assert again == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jwt-signing.yaml"]
    assert path.stat().st_mtime_ns == before.st_mtime_ns


def test_rotation_keeps_three_previous_keys(tmp_path: Path) -> None:
    """Each rotation puts a new key first and keeps at most three older ones."""
    path = tmp_path / "jwt.yaml"
    first = load_signing_keys(JWTConfig(), path)
    now = utc_now()
    token = mint(first, {"sub": "k", "typ": "key"}, now, timedelta(hours=1))
    for _ in range(3):
        keys = rotate_signing_key(JWTConfig(), path, now)
    assert len(keys.keys) == 4
    assert decode(keys, token, now)["sub"] == "k"
    keys = rotate_signing_key(JWTConfig(), path, now)
    with pytest.raises(TokenError, match="jwt_unknown_kid"):
        decode(keys, token, now)


def test_environment_keys(tmp_path: Path) -> None:
    """jwt.key_env and jwt.previous_key_env hold the secrets; nothing is written."""
    config = JWTConfig(key_env="JWT_NOW", previous_key_env="JWT_OLD")
    old = load_signing_keys(
        JWTConfig(key_env="JWT_OLD"), tmp_path / "x", {"JWT_OLD": "o" * 40}
    )
    now = utc_now()
    token = mint(old, {"sub": "k", "typ": "key"}, now, timedelta(minutes=5))
    keys = load_signing_keys(
        config, tmp_path / "x", {"JWT_NOW": SECRET, "JWT_OLD": "o" * 40}
    )
    assert decode(keys, token, now)["sub"] == "k"
    assert not (tmp_path / "x").exists()
    with pytest.raises(KeyStoreError, match="rotate by moving the old secret"):
        rotate_signing_key(config, tmp_path / "x", now)


@pytest.mark.parametrize("value", [None, "", "short"])
def test_weak_environment_secret(tmp_path: Path, value: str | None) -> None:
    """A missing or short secret in the named variable is refused."""
    env = {} if value is None else {"JWT": value}
    with pytest.raises(KeyStoreError, match="must hold >= 32 characters"):
        load_signing_keys(JWTConfig(key_env="JWT"), tmp_path / "x", env)


@pytest.mark.parametrize("text", ["nope: [", "keys: []", "keys: [{kid: a}]", "- 1"])
def test_corrupt_key_file(tmp_path: Path, text: str) -> None:
    """A broken signing key file is a clear error that never quotes it."""
    path = tmp_path / "jwt.yaml"
    path.write_text(text)
    with pytest.raises(KeyStoreError, match=r"jwt\.yaml: "):
        load_signing_keys(JWTConfig(), path)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-jwt", "malformed_jwt"),
        (jwt.encode({"sub": "k"}, "s" * 64, algorithm="HS512"), "jwt_algorithm"),
    ],
)
def test_malformed_tokens(tmp_path: Path, token: str, reason: str) -> None:
    """Garbage and other algorithms are rejected before any key is looked up."""
    keys = load_signing_keys(JWTConfig(), tmp_path / "jwt.yaml")
    with pytest.raises(TokenError, match=reason):
        decode(keys, token, utc_now())


def test_looks_like_jwt() -> None:
    """Only three-part eyJ... values take the JWT path."""
    assert looks_like_jwt("eyJa.b.c")
    assert not looks_like_jwt("ap_abcdefghijkl_x")
    assert not looks_like_jwt("eyJa.b")


async def test_signing_key_rotation(stack: Stack, config_file: Path, capsys) -> None:
    """After `signing-key rotate`, old tokens stay valid; new ones use the new kid."""

    _, before = await stack.api("POST", "/admin/keys/alice/tokens", {"ttl": "1h"})
    code = await asyncio.to_thread(
        main, ["signing-key", "rotate", "--json", "--config", str(config_file)]
    )
    rotated = json.loads(capsys.readouterr().out)
    assert code == 0
    await stack.proxy.app[WATCHER_KEY].reload_signing(force=True)
    _, after = await stack.api("POST", "/admin/keys/alice/tokens", {"ttl": "1h"})
    assert pyjwt.get_unverified_header(after["token"])["kid"] == rotated["kid"]
    assert (
        pyjwt.get_unverified_header(before["token"])["kid"] in rotated["verifying_kids"]
    )
    assert await stack.call(before["token"]) == 200
    assert await stack.call(after["token"]) == 200
