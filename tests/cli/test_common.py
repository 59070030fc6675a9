"""cli.common: the admin trail of CLI actions, terminal escapes shown escaped."""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from pathlib import Path

from authproxy.admin.app import create_admin_app
from authproxy.cli.main import main
from tests.support.payloads import CONTROL, NASTY, NASTY_SHOWN


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
    assert f"note: {NASTY_SHOWN}\n" in out
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
    assert f"note: {NASTY_SHOWN}\\nsecond line\n" in out
    assert CONTROL.search(out) is None
