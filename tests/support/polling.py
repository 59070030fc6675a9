"""Waiting for something to have happened: polls, never bare sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.support.fake_ollama.server import FakeOllama


async def poll_until(
    condition: Callable[[], object], within: float = 2.0, interval: float = 0.01
) -> None:
    """Poll ``condition`` until true or ``within`` seconds pass (callers assert)."""
    for _ in range(round(within / interval)):
        if condition():
            return
        await asyncio.sleep(interval)


async def upstream_saw_disconnect(fake: FakeOllama, left: float) -> None:
    """Assert the fake upstream saw its request closed within 1 s of ``left``."""
    await poll_until(lambda: fake.disconnects, within=1.0)
    assert fake.disconnects, "upstream never saw the disconnect"
    assert fake.disconnects[0] - left < 1.0
