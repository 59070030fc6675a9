"""metering.trail: the admin trail of key changes, sealed, 0600, never followed."""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from authproxy.admin.app import create_admin_app
from authproxy.cli.main import main
from authproxy.keys.store import TOKEN_RE
from authproxy.metering.chain import check_line, verify_files
from authproxy.times import utc_now
from tests.conftest import MakeKey, Secrets


class MutableClock:
    """A clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class Stack:
    """A running proxy and its admin API sharing one clock."""

    proxy: TestClient[Any, Any]
    admin: TestClient[Any, Any]
    admin_token: str
    clock: MutableClock
    secrets: Secrets

    async def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        auth = {
            "Authorization": f"Bearer {token or self.admin_token}",
            # Every write says JSON, even without a body (revoke).
            **({} if method == "GET" else {"Content-Type": "application/json"}),
            **(headers or {}),
        }
        data = b"" if body is None else json.dumps(body).encode()
        resp = await self.admin.request(method, path, data=data, headers=auth)
        data = await resp.json()
        if isinstance(data, dict) and isinstance(data.get("token"), str):
            self.secrets.add(data["token"])
        return resp.status, data

    async def call(
        self, token: str, method: str = "GET", path: str = "/api/tags", body: Any = None
    ) -> int:
        resp = await self.proxy.request(
            method, path, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        await resp.read()
        return resp.status


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
async def stack(
    start_proxy, aiohttp_client, make_key: MakeKey, clock: MutableClock, secrets_seen
) -> Stack:
    ops = make_key("ops", scopes=["admin"])
    assert ops.token is not None
    proxy = await start_proxy(clock=clock)
    admin = await aiohttp_client(create_admin_app(proxy.app, clock=clock))
    return Stack(proxy, admin, ops.token, clock, secrets_seen)


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
    for secret in (created["token"], rotated["token"], minted["token"]):
        assert secret not in text
    assert verify_files([trail_path]).ok


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
