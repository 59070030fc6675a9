"""cli.keys: keys create, list, show, update, rotate, revoke from the shell."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest

from authproxy.cli.main import main
from authproxy.keys.store import TOKEN_RE, read_store
from tests.support.cli import shown_fields


def test_create_prints_token_once_and_stores_only_a_hash(cli, keys_path: Path) -> None:
    """The token is printed, and the store holds an argon2id hash, never the token."""
    code, out, _ = cli("keys", "create", "svc-1")
    assert code == 0
    token = TOKEN_RE.search(out)
    assert token is not None
    text = keys_path.read_text()
    assert token.group(0) not in text
    assert token.group(2) not in text
    record = read_store(keys_path).by_name["svc-1"]
    assert record.hash.startswith("$argon2id$")
    assert record.id == token.group(1)
    assert stat.S_IMODE(keys_path.stat().st_mode) == 0o600
    assert len(token.group(2)) == 43  # 256 bits, base64url


def test_create_json(cli) -> None:
    """--json prints one object with id, name and token."""
    code, out, _ = cli("keys", "create", "svc", "--json", "--expires", "30d")
    assert code == 0
    data = json.loads(out)
    assert set(data) >= {"id", "name", "token", "kind", "created_at", "expires_at"}
    assert data["name"] == "svc"
    assert data["kind"] == "token"
    assert TOKEN_RE.fullmatch(data["token"])
    assert data["expires_at"].endswith("Z")
    assert "hash" not in data


def test_create_with_password_from_stdin(
    cli, monkeypatch, keys_path: Path, secrets_seen
) -> None:
    """--password-stdin makes a Basic-only key from a chosen password."""
    secrets_seen.add("a long enough password")
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    code, out, _ = cli("keys", "create", "human", "--password-stdin", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["token"] is None
    assert data["kind"] == "password"
    assert "a long enough password" not in keys_path.read_text()


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["bad name"], "", "invalid key name 'bad name'"),
        (["x", "--expires", "soon"], "", "--expires: invalid time 'soon'"),
        (
            ["x", "--expires", "2020-01-01T00:00:00Z"],
            "",
            "expires_at: must be in the future",
        ),
        (["x", "--password-stdin"], "short\n", "password too short"),
    ],
    ids=["name", "expires-garbage", "expires-past", "short-password"],
)
def test_create_rejects_bad_input(
    cli, monkeypatch, args, stdin, message, keys_path: Path
) -> None:
    """Bad input exits 1 with a clear message and writes nothing."""
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code, out, err = cli("keys", "create", *args)
    assert code == 1
    assert message in err
    assert out == ""
    assert not keys_path.exists()


def test_duplicate_name_is_refused(cli) -> None:
    """Names are unique."""
    assert cli("keys", "create", "dup")[0] == 0
    code, _, err = cli("keys", "create", "dup")
    assert code == 1
    assert "a key named 'dup' already exists" in err


def test_list_never_shows_secrets(cli, keys_path: Path) -> None:
    """keys list shows metadata and status, never hashes or tokens."""
    _, out, _ = cli("keys", "create", "one")
    token = TOKEN_RE.search(out)
    assert token is not None
    cli("keys", "create", "two")
    cli("keys", "revoke", "two")
    code, table, _ = cli("keys", "list")
    assert code == 0
    assert table.splitlines()[0].split() == [
        "ID",
        "NAME",
        "KIND",
        "STATUS",
        "SCOPES",
        "MODELS",
        "CREATED",
        "EXPIRES",
        "FINGERPRINT",
    ]
    assert "argon2" not in table
    assert token.group(0) not in table
    code, out, _ = cli("keys", "list", "--json")
    rows = json.loads(out)
    assert [(r["name"], r["status"]) for r in rows] == [
        ("one", "active"),
        ("two", "revoked"),
    ]
    assert all("hash" not in r for r in rows)


def test_revoke_by_id_and_twice(cli) -> None:
    """Revoking works by id; revoking again says so; an unknown key exits 1."""
    _, out, _ = cli("keys", "create", "gone", "--json")
    key_id = json.loads(out)["id"]
    code, out, _ = cli("keys", "revoke", key_id)
    assert (code, out.strip()) == (0, f"Revoked key 'gone' (id {key_id}).")
    code, out, _ = cli("keys", "revoke", "gone")
    assert (code, out.strip()) == (0, f"Key 'gone' (id {key_id}) was already revoked.")
    code, _, err = cli("keys", "revoke", "nobody")
    assert code == 1
    assert "no key with id or name 'nobody'" in err


def test_show_update_rotate_token(cli, keys_path: Path, secrets_seen) -> None:
    """show, update, rotate (with grace) and token all work from the command line."""
    _, out, _ = cli(
        "keys", "create", "ops-bot", "--json", "--scopes", "inference,models:read"
    )
    created = json.loads(out)
    code, out, _ = cli("keys", "show", "ops-bot", "--json")
    assert (code, json.loads(out)["scopes"]) == (0, ["inference", "models:read"])
    code, out, _ = cli("keys", "show", created["id"])
    assert code == 0
    assert shown_fields(out)["id"] == created["id"]
    code, out, _ = cli(
        "keys",
        "update",
        "ops-bot",
        "--models",
        "llama3.2,qwen3:*",
        "--note",
        "bot",
        "--expires",
        "30d",
        "--json",
    )
    updated = json.loads(out)
    assert (code, updated["models"], updated["note"]) == (
        0,
        ["llama3.2", "qwen3:*"],
        "bot",
    )
    assert updated["expires_at"] is not None
    code, out, _ = cli(
        "keys", "update", "ops-bot", "--expires", "never", "--disable", "--json"
    )
    assert (json.loads(out)["expires_at"], json.loads(out)["status"]) == (
        None,
        "disabled",
    )
    code, out, _ = cli("keys", "update", "ops-bot", "--enable")
    assert (code, out.strip()) == (0, f"Updated key 'ops-bot' (id {created['id']}).")
    code, _, err = cli("keys", "update", "ops-bot")
    assert code == 1
    assert "nothing to change" in err
    code, out, _ = cli("keys", "rotate", "ops-bot", "--grace", "1h")
    assert code == 0
    assert "The previous token works until " in out
    new_token = TOKEN_RE.search(out)
    assert new_token is not None
    assert new_token.group(1) == created["id"]
    assert new_token.group(0) != created["token"]
    record = read_store(keys_path).by_name["ops-bot"]
    assert len(record.previous) == 1
    code, out, _ = cli("keys", "rotate", "ops-bot", "--json")
    assert json.loads(out)["token"].startswith(f"ap_{created['id']}_")
    code, _, err = cli("keys", "rotate", "ops-bot", "--grace", "later")
    assert (code, "--grace: invalid duration 'later'" in err) == (1, True)
    code, out, _ = cli(
        "keys", "token", "ops-bot", "--ttl", "5m", "--scopes", "inference", "--json"
    )
    minted = json.loads(out)
    secrets_seen.add(minted["token"])
    assert (code, minted["scopes"], minted["key_id"]) == (
        0,
        ["inference"],
        created["id"],
    )
    code, _, err = cli("keys", "token", "ops-bot", "--scopes", "admin")
    assert (code, "scopes: the key lacks 'admin'" in err) == (1, True)
    code, _, err = cli("keys", "token", "ops-bot", "--ttl", "soon")
    assert (code, "--ttl: invalid duration 'soon'" in err) == (1, True)


def test_password_keys_cannot_rotate(cli, monkeypatch) -> None:
    """rotate is for token keys; a password key gets a clear error."""
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    cli("keys", "create", "human", "--password-stdin")
    code, _, err = cli("keys", "rotate", "human")
    assert code == 1
    assert "only token and ollama keys can be rotated" in err


def test_cli_sets_limits(
    capsys, config_file: Path, keys_path: Path, secrets_seen
) -> None:
    """keys create/update take --rpm, --concurrency, --tokens-per-* (0 = none)."""
    assert (
        main(
            [
                "keys",
                "create",
                "lim",
                "--rpm",
                "60",
                "--tokens-per-day",
                "1000",
                "--json",
                "--config",
                str(config_file),
            ]
        )
        == 0
    )
    secrets_seen.add(json.loads(capsys.readouterr().out)["token"])
    assert (
        main(
            [
                "keys",
                "update",
                "lim",
                "--concurrency",
                "2",
                "--rpm",
                "0",
                "--config",
                str(config_file),
            ]
        )
        == 0
    )
    limits = read_store(keys_path).by_name["lim"].limits
    assert limits.as_dict() == {"concurrent": 2, "tokens_per_day": 1000}
    assert (
        main(["keys", "update", "lim", "--rpm", "-1", "--config", str(config_file)])
        == 1
    )
    assert (
        "limits.requests_per_minute: expected a positive integer or 0"
        in capsys.readouterr().err
    )
