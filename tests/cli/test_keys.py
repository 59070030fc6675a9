"""cli.keys: keys create, list, show, update, rotate, revoke from the shell."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest

from authproxy.cli.main import main
from authproxy.keys.store import TOKEN_RE, read_store
from authproxy.times import utc_now
from tests.support.cli import run_cli, shown_fields


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
    rows = json.loads(out)["keys"]
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


def test_show_prints_fields_a_person_reads(cli) -> None:
    """keys show aligns its fields and never prints None, False or a Python list."""
    cli("keys", "create", "svc", "--scopes", "inference,embeddings", "--rpm", "60")
    code, out, _ = cli("keys", "show", "svc")
    assert code == 0
    for repr_ in ("None", "False", "True", "[", "{", "'"):
        assert repr_ not in out
    lines = out.splitlines()
    assert [line.split(":", 1)[0] for line in lines[:4]] == [
        "id",
        "name",
        "kind",
        "status",
    ]
    # Every value starts in the same column.
    assert len({len(line) - len(line.split(":", 1)[1].lstrip()) for line in lines}) == 1
    fields = shown_fields(out)
    assert (fields["scopes"], fields["models"], fields["limits"]) == (
        "inference, embeddings",
        "all",
        "requests_per_minute 60",
    )
    assert (fields["expires_at"], fields["disabled"], fields["previous"]) == (
        "-",
        "no",
        "-",
    )
    cli("keys", "rotate", "svc", "--grace", "1h")
    assert shown_fields(cli("keys", "show", "svc")[1])["previous"].endswith("Z")


async def test_show_json_is_the_admin_apis_object(
    stack, config_file: Path, capsys
) -> None:
    """keys show --json prints the very object GET /admin/keys/{id} answers."""
    code, out = await run_cli(
        capsys, "keys", "show", "alice", "--json", "--config", str(config_file)
    )
    status, shown = await stack.api("GET", "/admin/keys/alice")
    assert (code, status) == (0, 200)
    assert json.loads(out) == shown


def test_create_and_rotate_json_carry_status_and_times_in_z(cli) -> None:
    """create --json has status; rotate --json says until when the old token works."""
    _, out, _ = cli("keys", "create", "svc", "--json")
    assert json.loads(out)["status"] == "active"
    _, out, _ = cli("keys", "rotate", "svc", "--grace", "1d", "--json")
    rotated = json.loads(out)
    assert rotated["status"] == "active"
    assert rotated["previous_valid_until"].endswith("Z")
    assert rotated["previous"][0]["until"] == rotated["previous_valid_until"]
    _, out, _ = cli("keys", "rotate", "svc", "--json")
    assert json.loads(out)["previous_valid_until"] is None


def test_passwd_changes_a_password_with_a_grace(
    cli, monkeypatch, keys_path: Path, audit_path: Path, secrets_seen
) -> None:
    """keys passwd reads the new password; the old one stays for --grace; audited."""
    secrets_seen.add("the first password", "the second password")
    monkeypatch.setattr("sys.stdin", io.StringIO("the first password\n"))
    cli("keys", "create", "human", "--password-stdin")
    old = read_store(keys_path).by_name["human"]
    monkeypatch.setattr("sys.stdin", io.StringIO("the second password\n"))
    code, out, _ = cli("keys", "passwd", "human", "--password-stdin", "--grace", "2h")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"Changed the password of key 'human' (id {old.id})."
    assert lines[1].startswith("The previous password works until ")
    new = read_store(keys_path).by_name["human"]
    assert [h for h, _ in new.hashes_at(utc_now())] == [new.hash, old.hash]
    monkeypatch.setattr("sys.stdin", io.StringIO("the first password\n"))
    code, out, _ = cli("keys", "passwd", "human", "--password-stdin", "--json")
    changed = json.loads(out)
    assert (code, changed["token"], changed["previous_valid_until"]) == (0, None, None)
    text = audit_path.with_name("admin.jsonl").read_text()
    passwd = [json.loads(line) for line in text.splitlines()][1:]
    assert [(r["action"], r["detail"]) for r in passwd] == [
        ("passwd", {"grace_seconds": 7200.0}),
        ("passwd", {"grace_seconds": 0.0}),
    ]
    assert "the first password" not in text
    assert "the second password" not in text


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["svc", "--password-stdin"], "a long new password\n", "only a password key"),
        (["human", "--password-stdin"], "short\n", "password too short"),
        (["human", "--password-stdin", "--grace", "soon"], "", "--grace: invalid"),
    ],
    ids=["token-key", "short", "bad-grace"],
)
def test_passwd_refuses(cli, monkeypatch, args, stdin: str, message: str) -> None:
    """passwd on a token key, a short password or a bad grace: exit 1, clear words."""
    cli("keys", "create", "svc")
    monkeypatch.setattr("sys.stdin", io.StringIO("the first password\n"))
    cli("keys", "create", "human", "--password-stdin")
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code, out, err = cli("keys", "passwd", *args)
    assert (code, out) == (1, "")
    assert message in err
