"""admin.denials: failed admin authentications folded per client and window."""

from __future__ import annotations

import json
from collections import Counter
from http import HTTPStatus
from pathlib import Path

from authproxy.admin.app import create_admin_app
from authproxy.admin.denials import DenialTrail
from authproxy.cli.main import main
from tests.support.audit import auth_denials
from tests.support.auth import UNKNOWN_TOKEN, bearer_auth
from tests.support.harness import MakeKey
from tests.support.polling import poll_until

WRONG = bearer_auth(UNKNOWN_TOKEN)


async def test_failed_admin_authentications_are_aggregated(
    start_proxy, aiohttp_client, audit_path: Path, key
) -> None:
    """50 failures write 4 trail records (first and count, per reason) adding to 50."""
    proxy = await start_proxy()
    admin = await aiohttp_client(create_admin_app(proxy.app))
    path = audit_path.with_name("admin.jsonl")
    statuses = [
        (await admin.get("/admin/keys", headers=WRONG)).status for _ in range(50)
    ]
    assert statuses == [401] * 20 + [429] * 30
    # Only the first of each kind is written at once.
    assert [
        (r["detail"]["reason"], r["detail"]["count"]) for r in auth_denials(path)
    ] == [
        ("unknown_key", 1),
        ("client_blocked", 1),
    ]
    await admin.close()  # shutdown writes the open windows' counts
    records = auth_denials(path)
    assert len(records) == 4
    counts: Counter[str] = Counter()
    for r in records:
        assert (r["result"], r["actor"], r["client"]) == (
            "denied",
            "anonymous",
            "127.0.0.1",
        )
        counts[r["detail"]["reason"]] += r["detail"]["count"]
    assert counts == {"unknown_key": 20, "client_blocked": 30}
    summaries = [r for r in records if r["detail"]["count"] > 1]
    assert all(s["request_id"] is None and s["detail"]["first"] for s in summaries)
    assert main(["audit", "verify", str(path)]) == 0


async def test_a_window_is_written_when_it_closes(
    start_proxy, aiohttp_client, audit_path: Path, key
) -> None:
    """When the window ends its count is written without waiting for shutdown."""
    proxy = await start_proxy({"limits.auth_window": 1.0})
    admin = await aiohttp_client(create_admin_app(proxy.app))
    path = audit_path.with_name("admin.jsonl")
    for _ in range(5):
        assert (await admin.get("/admin/keys")).status == 401
    await poll_until(lambda: len(auth_denials(path)) == 2, within=5.0)
    assert [
        (r["detail"]["reason"], r["detail"]["count"]) for r in auth_denials(path)
    ] == [
        ("missing", 1),
        ("missing", 4),
    ]
    # A new window opens with a record of its own.
    assert (await admin.get("/admin/keys")).status == 401
    await poll_until(lambda: len(auth_denials(path)) == 3, within=5.0)
    assert auth_denials(path)[-1]["detail"] == {"reason": "missing", "count": 1}


async def test_successful_admin_actions_are_still_recorded_each(
    start_proxy, aiohttp_client, audit_path: Path, make_key: MakeKey, secrets_seen
) -> None:
    """Failures are folded, but every successful change keeps its own record."""
    ops = make_key("ops", scopes=["admin"])
    proxy = await start_proxy()
    admin = await aiohttp_client(create_admin_app(proxy.app))
    for i in range(3):
        assert (await admin.get("/admin/keys", headers=WRONG)).status == 401
        resp = await admin.post(
            "/admin/keys", json={"name": f"k{i}"}, headers=bearer_auth(ops.token)
        )
        assert resp.status == HTTPStatus.CREATED
        secrets_seen.add((await resp.json())["token"])
    path = audit_path.with_name("admin.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["action"] for r in records] == ["auth", "create", "create", "create"]


async def test_many_clients_share_an_overflow_window(tmp_path: Path) -> None:
    """Past max_windows open windows, new clients are folded into one per reason."""
    path = tmp_path / "admin.jsonl"
    denials = DenialTrail(path, window=60, max_windows=2)
    for i in range(10):
        await denials.denied(
            client=f"192.0.2.{i}", actor="anonymous", reason="missing", request_id=None
        )
    assert [r["client"] for r in auth_denials(path)] == [
        "192.0.2.0",
        "192.0.2.1",
        "192.0.2.2",
    ]
    await denials.close()
    records = auth_denials(path)
    assert len(records) == 4
    assert (records[-1]["client"], records[-1]["detail"]["count"]) == (None, 7)
    assert sum(r["detail"]["count"] for r in records) == 10
