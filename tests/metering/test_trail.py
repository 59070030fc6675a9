"""metering.trail: the admin trail of key changes, sealed, 0600, never followed."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

from authproxy.metering.chain import check_line, verify_files
from authproxy.metering.trail import record_action
from tests.support.admin import Stack


async def test_admin_trail_records_actions_without_secrets(
    stack: Stack, audit_path: Path
) -> None:
    """Create, update, rotate, token and revoke are recorded with actor and key id."""
    _, created = await stack.api("POST", "/admin/keys", {"name": "audited"})
    await stack.api("PATCH", "/admin/keys/audited", {"note": "n"})
    _, rotated = await stack.api("POST", "/admin/keys/audited/rotate", {"grace": "1m"})
    _, minted = await stack.api("POST", "/admin/keys/audited/tokens", {})
    await stack.api("POST", "/admin/keys/audited/revoke")
    trail_path = audit_path.with_name("admin.jsonl")
    text = trail_path.read_text()
    records = [json.loads(line) for line in text.splitlines()]
    assert [(r["action"], r["actor"], r["key_id"], r["source"]) for r in records] == [
        (action, "ops", created["id"], "api")
        for action in ("create", "update", "rotate", "token", "revoke")
    ]
    assert all(r["ts"].endswith("Z") and r["request_id"] for r in records)
    assert {r["replica"] for r in records} == {socket.gethostname()}
    for secret in (created["token"], rotated["token"], minted["token"]):
        assert secret not in text
    assert verify_files([trail_path]).ok


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


def test_admin_trail_names_the_configured_replica(tmp_path: Path) -> None:
    """record_action writes the replica it is given (server.replica)."""
    trail = tmp_path / "admin.jsonl"
    assert record_action(
        trail, actor="cli:ops", action="create", source="cli", replica="pod-1"
    )
    (record,) = [json.loads(line) for line in trail.read_text().splitlines()]
    assert record["replica"] == "pod-1"
