"""limits.state: per-key counters survive a restart (state file or audit log)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from authproxy.web.appkeys import KEY_LIMITS_KEY
from tests.support.clock import WallClock
from tests.support.harness import MakeKey
from tests.support.payloads import CHAT


async def test_limits_survive_a_restart(
    start_proxy, make_key: MakeKey, audit_path: Path, aiohttp_client
) -> None:
    """Counters come back from the state file, or from the audit log without it."""
    limited = make_key(
        "persist", limits={"tokens_per_day": 50, "requests_per_minute": 5}
    )
    clock = WallClock(datetime.fromisoformat("2026-11-10T12:00:00+00:00"))
    auth = {"Authorization": f"Bearer {limited.token}"}
    first = await start_proxy(clock=clock)
    for _ in range(2):
        assert (await first.post("/api/chat", json=CHAT, headers=auth)).status == 200
    await first.close()  # cleanup saves the state file
    state = audit_path.with_name("limits-state.json")
    saved = json.loads(state.read_text())["keys"][limited.record.id]
    assert (saved["day_tokens"], saved["bucket"]) == (60, 3.0)
    second = await start_proxy(clock=clock)
    resp = await second.post("/api/chat", json=CHAT, headers=auth)
    assert resp.status == 429
    assert resp.headers["X-RateLimit-Limit"] == "50"
    await second.close()
    state.unlink()
    third = await start_proxy(clock=clock)
    assert (await third.post("/api/chat", json=CHAT, headers=auth)).status == 429
    assert third.app[KEY_LIMITS_KEY].usage(limited.record.id) == (60, 60)
