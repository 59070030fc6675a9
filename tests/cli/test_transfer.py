"""cli.transfer: ``keys export`` and ``keys import`` move a store file <-> Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from authproxy.config.load import load_config
from authproxy.keys.backend import key_backend
from authproxy.keys.redisstore import RedisKeyStore
from authproxy.keys.store import TOKEN_RE, read_store
from tests.support.cli import run
from tests.support.harness import MakeKey, nested
from tests.support.logs import Secrets

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def redis_cli(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    redis_overrides: dict[str, Any],
    secrets_seen: Secrets,
) -> Cli:
    """Run `authproxy <args>` with the key store in Redis."""
    path = tmp_path / "redis.yaml"
    path.write_text(yaml.safe_dump(nested(redis_overrides)), encoding="utf-8")

    def call(*args: str) -> tuple[int, str, str]:
        code, out, err = run(capsys, *args, "--config", str(path))
        secrets_seen.add(*(m.group(0) for m in TOKEN_RE.finditer(out)))
        return code, out, err

    return call


@pytest.fixture
def redis_store(redis_overrides: dict[str, Any]) -> RedisKeyStore:
    store = key_backend(load_config(None, redis_overrides)).redis
    assert store is not None
    return store


def test_a_store_moves_to_redis_and_back_unchanged(
    make_key: MakeKey,
    keys_path: Path,
    tmp_path: Path,
    cli: Cli,
    redis_cli: Cli,
    redis_store: RedisKeyStore,
) -> None:
    """File -> export -> import into Redis -> export -> the same records, hashes too."""
    make_key("alice", scopes=["inference"], models=["llama3*"])
    make_key("bob", password="a-long-password-1")
    moved = tmp_path / "moved.yaml"
    assert cli("keys", "export", str(moved))[0] == 0
    code, out, _ = redis_cli("keys", "import", str(moved), "--json")
    assert code == 0
    assert json.loads(out) == {"imported": 2, "replaced": 0}
    assert redis_store.read() == read_store(keys_path)
    back = tmp_path / "back.yaml"
    code, out, _ = redis_cli("keys", "export", str(back), "--json")
    assert (code, json.loads(out)) == (0, {"exported": 2})
    assert read_store(back) == read_store(keys_path)
    assert back.stat().st_mode & 0o777 == 0o600


def test_import_into_a_store_with_keys_needs_replace(
    make_key: MakeKey,
    tmp_path: Path,
    cli: Cli,
    redis_cli: Cli,
    redis_store: RedisKeyStore,
) -> None:
    """Keys already there are not overwritten by accident; --replace does it."""
    make_key("alice")
    moved = tmp_path / "moved.yaml"
    cli("keys", "export", str(moved))
    assert redis_cli("keys", "create", "carol")[0] == 0
    code, _, err = redis_cli("keys", "import", str(moved))
    assert code == 1
    assert "already holds 1 key(s); give --replace" in err
    assert [r.name for r in redis_store.read().records] == ["carol"]
    assert redis_cli("keys", "import", str(moved), "--replace")[0] == 0
    assert [r.name for r in redis_store.read().records] == ["alice"]


def test_export_does_not_overwrite_a_file_without_force(
    tmp_path: Path, redis_cli: Cli
) -> None:
    """An existing file stays unless --force is given."""
    target = tmp_path / "there.yaml"
    target.write_text("keep me", encoding="utf-8")
    code, _, err = redis_cli("keys", "export", str(target))
    assert code == 1
    assert "exists; give --force" in err
    assert target.read_text(encoding="utf-8") == "keep me"
    assert redis_cli("keys", "export", str(target), "--force")[0] == 0
    assert read_store(target).records == ()


def test_importing_a_broken_file_changes_nothing(
    tmp_path: Path, redis_cli: Cli, redis_store: RedisKeyStore
) -> None:
    """A file cut short is refused before anything is written."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 2\nkeys: []\n", encoding="utf-8")
    code, _, err = redis_cli("keys", "import", str(broken))
    assert code == 1
    assert "incomplete" in err
    assert redis_store.version() is None


def test_key_commands_write_to_redis_from_the_environment(
    redis_overrides: dict[str, Any], redis_store: RedisKeyStore, secrets_seen: Secrets
) -> None:
    """`authproxy keys create` as a process, configured by AUTHPROXY_STATE_*."""
    env = {
        **os.environ,
        "AUTHPROXY_STATE_BACKEND": "redis",
        "AUTHPROXY_STATE_REDIS_URL": redis_overrides["state.redis_url"],
        "AUTHPROXY_KEYS_FILE": redis_overrides["keys.file"],
        "AUTHPROXY_AUDIT_ADMIN_FILE": redis_overrides["audit.admin_file"],
        "AUTHPROXY_KEYS_ARGON2_MEMORY_COST": "8",
        "AUTHPROXY_KEYS_ARGON2_TIME_COST": "1",
        "AUTHPROXY_KEYS_ARGON2_PARALLELISM": "1",
    }
    env.pop("AUTHPROXY_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "authproxy", "keys", "create", "dave", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    created = json.loads(done.stdout)
    secrets_seen.add(created["token"])
    assert [r.id for r in redis_store.read().records] == [created["id"]]
    assert not Path(redis_overrides["keys.file"]).exists()
