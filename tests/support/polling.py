"""Waiting for something to have happened: polls, never bare sleeps."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

from tests.support.fake_ollama.server import FakeOllama


async def poll_until(
    condition: Callable[[], object | Awaitable[object]],
    within: float = 2.0,
    interval: float = 0.01,
) -> bool:
    """Poll ``condition`` until true or ``within`` seconds pass; tell which.

    ``condition`` may be a coroutine function (a request, a scrape). Callers
    still assert what they waited for, so a failure names it.
    """
    for _ in range(round(within / interval)):
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return True
        await asyncio.sleep(interval)
    return False


async def upstream_saw_disconnect(fake: FakeOllama, left: float) -> None:
    """Assert the fake upstream saw its request closed within 1 s of ``left``."""
    await poll_until(lambda: fake.disconnects, within=1.0)
    assert fake.disconnects, "upstream never saw the disconnect"
    assert fake.disconnects[0] - left < 1.0
