"""cli.common: the admin trail of CLI actions, terminal escapes shown escaped."""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from pathlib import Path

import pytest
import yaml

from authproxy.admin.app import create_admin_app
from authproxy.cli.main import main
from authproxy.keys.store import TOKEN_RE
from tests.support.cli import run_process, shown_fields
from tests.support.payloads import CONTROL, NASTY, NASTY_SHOWN

CHEAP = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


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


def test_notes_with_terminal_escapes_are_shown_escaped(cli) -> None:
    """keys show prints a note's escapes and carriage returns as visible text."""
    _, out, _ = cli("keys", "create", "esc", "--note", "x", "--json")
    code, out, _ = cli("keys", "update", "esc", "--note", NASTY)
    assert code == 0
    code, out, _ = cli("keys", "show", "esc")
    assert code == 0
    assert shown_fields(out)["note"] == NASTY_SHOWN
    assert CONTROL.search(out) is None
    for command in (("show", "esc"), ("list",)):
        code, out, _ = cli("keys", *command, "--json")
        assert CONTROL.search(out) is None
        data = json.loads(out)
        assert (data["keys"][0] if "keys" in data else data)["note"] == NASTY


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
    assert shown_fields(out)["note"] == f"{NASTY_SHOWN}\\nsecond line"
    assert CONTROL.search(out) is None


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A config file with relative paths, in a directory of its own."""
    home = tmp_path / "site"
    home.mkdir()
    config = {
        "keys": {"file": "keys/keys.yaml", "argon2": CHEAP},
        "audit": {"file": "audit/usage.jsonl"},
    }
    (home / "authproxy.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return home


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """Another working directory, which must stay empty."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


def test_a_config_file_works_from_any_directory(
    site: Path, elsewhere: Path, secrets_seen
) -> None:
    """From another cwd, the store and both logs go beside the config, said once."""
    config = str(site / "authproxy.yaml")
    first = run_process(
        elsewhere, "keys", "create", "one", "--json", f"--config={config}"
    )
    secrets_seen.add(json.loads(first.stdout)["token"])
    store, trail = site / "keys" / "keys.yaml", site / "audit" / "admin.jsonl"
    assert (first.returncode, first.stderr) == (
        0,
        f"authproxy: created a new key store at {store} (admin trail: {trail})\n",
    )
    second = run_process(elsewhere, "keys", "create", "two", "--config", config)
    secrets_seen.add(*(m.group(0) for m in TOKEN_RE.finditer(second.stdout)))
    assert (second.returncode, second.stderr) == (0, "")
    listing = run_process(elsewhere, "keys", "list", "--json", "--config", config)
    assert [k["name"] for k in json.loads(listing.stdout)["keys"]] == ["one", "two"]
    actions = [json.loads(line)["action"] for line in trail.read_text().splitlines()]
    assert actions == ["create", "create"]
    assert list(elsewhere.iterdir()) == []


MISSING_STORE = [
    ["keys", "list"],
    ["keys", "show", "x"],
    ["keys", "update", "x", "--note", "n"],
    ["keys", "rotate", "x"],
    ["keys", "passwd", "x", "--password-stdin"],
    ["keys", "revoke", "x"],
    ["keys", "token", "x"],
    ["keys", "check"],
]


@pytest.mark.parametrize("command", MISSING_STORE, ids=lambda c: "-".join(c[:2]))
def test_a_missing_store_is_named_not_read_as_empty(
    site: Path, elsewhere: Path, command: list[str]
) -> None:
    """A command that reads the store exits 1 naming its full path; nothing is made."""
    done = run_process(
        elsewhere,
        *command,
        "--config",
        str(site / "authproxy.yaml"),
        stdin="a new long password\n",
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(
        f"authproxy: no key store at {site / 'keys' / 'keys.yaml'}: create one with "
    )
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in site.iterdir()) == ["authproxy.yaml"]
    assert list(elsewhere.iterdir()) == []


def test_without_a_config_the_cwd_is_used_and_named(elsewhere: Path) -> None:
    """With no config file the default store is in the cwd, named in full if missing."""
    done = run_process(elsewhere, "keys", "list")
    assert (done.returncode, done.stdout) == (1, "")
    assert f"no key store at {elsewhere / 'keys' / 'keys.yaml'}:" in done.stderr
