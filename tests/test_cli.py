"""The command line: keys create/list/revoke, --help everywhere, config errors."""

from __future__ import annotations

import asyncio
import io
import json
import re
import stat
from http import HTTPStatus
from pathlib import Path

import pytest

from authproxy.admin.app import create_admin_app
from authproxy.cli.main import main
from authproxy.keys.store import TOKEN_RE, read_store
from authproxy.metering.chain import check_line
from tests.conftest import wait_audit


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def cli(capsys, config_file: Path, secrets_seen):
    """Run `authproxy <args> --config <test config>`; remember printed tokens."""

    def call(*args: str) -> tuple[int, str, str]:
        code, out, err = run(capsys, *args, "--config", str(config_file))
        secrets_seen.add(*(m.group(0) for m in TOKEN_RE.finditer(out)))
        return code, out, err

    return call


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["keys"],
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "revoke"],
        ["healthcheck"],
        ["keys", "check"],
        ["check-config"],
    ],
    ids=lambda c: "-".join(c) or "top",
)
def test_every_command_has_help(capsys, command) -> None:
    """--help works on every command and exits 0."""
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: authproxy" in capsys.readouterr().out


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


def test_keys_flag_overrides_config(
    capsys, tmp_path: Path, config_file: Path, secrets_seen
) -> None:
    """--keys FILE wins over keys.file from the config."""
    other = tmp_path / "elsewhere" / "store.yaml"
    code, out, _ = run(
        capsys,
        "keys",
        "create",
        "x",
        "--json",
        "--config",
        str(config_file),
        "--keys",
        str(other),
    )
    secrets_seen.add(json.loads(out)["token"])
    assert code == 0
    assert read_store(other).by_name["x"].name == "x"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("listen:\n  port: abc\n", "listen.port: expected an integer, got 'abc'"),
        (
            "listen:\n  port: 70000\n",
            "listen.port: expected int in 0..65535, got 70000",
        ),
        ("upstream:\n  url: ftp://x\n", "upstream.url: expected an http(s) URL"),
        ("bogus: 1\n", "bogus: unknown key"),
        ("keys:\n  argon2:\n    memory: 1\n", "keys.argon2.memory: unknown key"),
        ("- a\n", "expected a mapping at the top"),
        ("a: [\n", "is not valid YAML at line 2"),
    ],
    ids=["type", "range", "url", "unknown", "unknown-nested", "not-mapping", "yaml"],
)
def test_config_errors_name_the_key(capsys, tmp_path: Path, yaml_text, message) -> None:
    """An invalid config stops the command with exit 2 and names the key."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    code, out, err = run(capsys, "keys", "list", "--config", str(path))
    assert code == 2
    assert out == ""
    assert message in err


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
    assert f"id: {created['id']}" in out
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


def test_admin_trail_records_cli_actions(cli, audit_path: Path) -> None:
    """CLI changes land in the admin trail with the OS user as actor, no secrets."""
    _, out, _ = cli("keys", "create", "trail", "--json")
    token = json.loads(out)["token"]
    cli("keys", "revoke", "trail")
    text = audit_path.with_name("admin.jsonl").read_text()
    records = [json.loads(line) for line in text.splitlines()]
    assert [(r["action"], r["source"]) for r in records] == [
        ("create", "cli"),
        ("revoke", "cli"),
    ]
    assert records[0]["actor"].startswith("cli:")
    assert token not in text


NASTY = "\x1b[31mred\x1b[0m\roverwritten\x07\x9b2J\u202eevil"
NASTY_SHOWN = r"\x1b[31mred\x1b[0m\roverwritten\x07\x9b2J\u202eevil"
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]")  # all but newline


def test_notes_with_terminal_escapes_are_shown_escaped(cli) -> None:
    """keys show prints a note's escapes and carriage returns as visible text."""
    _, out, _ = cli("keys", "create", "esc", "--note", "x", "--json")
    code, out, _ = cli("keys", "update", "esc", "--note", NASTY)
    assert code == 0
    code, out, _ = cli("keys", "show", "esc")
    assert code == 0
    assert f"note: {NASTY_SHOWN}\n" in out
    assert CONTROL.search(out) is None
    for command in (("show", "esc"), ("list",)):
        code, out, _ = cli("keys", *command, "--json")
        assert CONTROL.search(out) is None
        data = json.loads(out)
        assert (data if isinstance(data, dict) else data[0])["note"] == NASTY


async def test_note_set_through_the_admin_api_is_shown_escaped(
    start_proxy, aiohttp_client, make_key, capsys, config_file: Path
) -> None:
    """A note that an admin client stored is never printed raw by the CLI."""
    ops = make_key("ops", scopes=["admin"])
    proxy = await start_proxy()
    admin = await aiohttp_client(create_admin_app(proxy.app))
    resp = await admin.patch(
        "/admin/keys/alice",
        json={"note": NASTY + "\nsecond line"},
        headers={"Authorization": f"Bearer {ops.token}"},
    )
    assert resp.status == HTTPStatus.OK
    code = await asyncio.to_thread(
        main, ["keys", "show", "alice", "--config", str(config_file)]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"note: {NASTY_SHOWN}\\nsecond line\n" in out
    assert CONTROL.search(out) is None


async def test_usage_report_escapes_model_names(
    proxy, bearer, fake, audit_path: Path, config_file: Path, capsys
) -> None:
    """A model name with escapes, echoed by the upstream, is escaped in the table.

    (A request naming such a model is refused as an invalid name; the name in
    the record then comes from the response.)
    """
    fake.behaviour.reply_model = NASTY
    body = {"messages": [{"role": "user", "content": "x"}]}
    url = "/v1/chat/completions"
    await (await proxy.post(url, json=body, headers=bearer)).read()
    await wait_audit(audit_path, 1)
    args = ["usage", "--by", "model", "--config", str(config_file)]
    assert await asyncio.to_thread(main, args) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith(NASTY_SHOWN + "  ")
    assert CONTROL.search(out) is None
    assert await asyncio.to_thread(main, [*args, "--json"]) == 0
    out = capsys.readouterr().out
    assert CONTROL.search(out) is None
    assert json.loads(out)[0]["model"] == NASTY


def test_verify_messages_escape_file_names(tmp_path: Path, capsys) -> None:
    """audit verify never prints a control character from a file name."""
    path = tmp_path / "audit\x1b[2J.jsonl"
    path.write_bytes(b"garbage\n")
    assert main(["audit", "verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert out == (
        f"FAILED after 0 good records: {tmp_path}/audit\\x1b[2J.jsonl:1: "
        "not a sealed audit record (no trailing hash)\n"
    )


def test_admin_trail_is_0600_and_never_followed_through_a_symlink(
    cli, audit_path: Path, tmp_path: Path, log_capture
) -> None:
    """A 0644 trail is narrowed to 0600; a symlink there is refused and logged."""
    trail = audit_path.with_name("admin.jsonl")
    trail.parent.mkdir(parents=True)
    trail.write_bytes(b"")
    trail.chmod(0o644)
    assert cli("keys", "create", "one")[0] == 0
    assert stat.S_IMODE(trail.stat().st_mode) == 0o600
    assert len(trail.read_bytes().splitlines()) == 1
    trail.unlink()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    trail.symlink_to(victim)
    assert cli("keys", "create", "two")[0] == 0  # the trail never blocks admin work
    assert victim.read_text() == "precious\n"
    [failed] = log_capture.events("admin_log_failed")
    assert failed["error"] == "is a symbolic link; refusing to follow it"


def test_admin_trail_starts_a_new_line_after_a_torn_one(cli, audit_path: Path) -> None:
    """A trail left torn by a full disk gets its next record on a line of its own."""
    trail = audit_path.with_name("admin.jsonl")
    assert cli("keys", "create", "one")[0] == 0
    first = trail.read_bytes()
    trail.write_bytes(first + first[:30])  # a record that did not fit
    assert cli("keys", "create", "two")[0] == 0
    lines = trail.read_bytes().split(b"\n")
    assert lines[1] == first[:30]
    _, after_first = check_line(lines[0], None)
    record, _ = check_line(lines[2], after_first)
    assert (record["action"], record["seq"], lines[3]) == ("create", 2, b"")
