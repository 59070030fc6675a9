"""cli.keylist: keys list, with each key's activity from the audit log."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from authproxy.times import format_timestamp, utc_now
from tests.support.admin import Stack
from tests.support.audit import write_records
from tests.support.cli import run_cli


def test_list_shows_activity_from_the_audit_log(cli, audit_path: Path) -> None:
    """keys list adds last use, requests and tokens (today, 30 days) per key id."""
    _, out, _ = cli("keys", "create", "busy", "--json")
    busy = json.loads(out)["id"]
    cli("keys", "create", "idle")
    now = utc_now()
    today = format_timestamp(now)
    older = format_timestamp(now - timedelta(days=10))
    write_records(
        audit_path,
        [
            {
                "ts": older,
                "key_id": busy,
                "key_name": "busy",
                "prompt_tokens": 70,
                "completion_tokens": 30,
                "outcome": "completed",
            },
            {
                "ts": today,
                "key_id": busy,
                "key_name": "busy",
                "prompt_tokens": 5,
                "completion_tokens": 1,
                "outcome": "completed",
            },
            {"ts": today, "key_id": busy, "key_name": None, "outcome": "denied"},
        ],
    )
    code, out, err = cli("keys", "list")
    assert (code, err) == (0, "")
    lines = [line.split() for line in out.splitlines()]
    assert lines[0][8:] == [
        "LAST_USED",
        "REQ_TODAY",
        "TOKENS_TODAY",
        "REQ_30D",
        "TOKENS_30D",
        "FINGERPRINT",
    ]
    by_name = {line[1]: line[8:13] for line in lines[1:]}
    assert by_name == {
        "busy": [today, "1", "6", "2", "106"],
        "idle": ["never", "0", "0", "0", "0"],
    }
    code, out, err = cli("keys", "list", "--json")
    assert (code, err) == (0, "")
    activity = {k["name"]: k["activity"] for k in json.loads(out)["keys"]}
    assert activity["busy"] == {
        "last_used_at": today,
        "requests_today": 1,
        "tokens_today": 6,
        "requests_30d": 2,
        "tokens_30d": 106,
    }
    assert activity["idle"]["last_used_at"] is None


def test_list_without_an_audit_log_says_so(cli, audit_path: Path) -> None:
    """Without an audit log keys list still works: a note, no activity columns."""
    cli("keys", "create", "one")
    note = f"note: no audit log at {audit_path}; activity columns left out\n"
    code, out, err = cli("keys", "list")
    assert (code, err) == (0, note)
    assert out.splitlines()[0].split()[-2:] == ["EXPIRES", "FINGERPRINT"]
    code, out, err = cli("keys", "list", "--json")
    assert (code, err) == (0, note)
    data = json.loads(out)
    assert list(data) == ["keys"]
    assert [(k["name"], k["activity"]) for k in data["keys"]] == [("one", None)]


async def test_list_json_is_the_admin_api_key_object(
    stack: Stack, config_file: Path, capsys
) -> None:
    """keys list --json holds the admin API's key objects, plus their activity."""
    status, api = await stack.api("GET", "/admin/keys")
    assert status == 200
    code, out = await run_cli(
        capsys, "keys", "list", "--json", "--config", str(config_file)
    )
    assert code == 0
    cli_keys = json.loads(out)["keys"]
    assert [{k: v for k, v in key.items() if k != "activity"} for key in cli_keys] == (
        api["keys"]
    )


def test_list_with_an_unreadable_audit_log_says_so(cli, audit_path: Path) -> None:
    """An audit log that cannot be read (a directory here) is a note, not a failure."""
    cli("keys", "create", "one")
    audit_path.mkdir(parents=True)
    code, out, err = cli("keys", "list")
    audit_path.rmdir()  # the secrets check reads the log after each test
    assert code == 0
    assert err == (
        f"note: cannot read {audit_path}: Is a directory; activity columns left out\n"
    )
    assert out.splitlines()[1].split()[1] == "one"
