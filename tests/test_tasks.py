"""tasks: a lost cancellation is still noticed; stopping tasks is bounded."""

from __future__ import annotations

import asyncio
import contextlib

from authproxy.tasks import raise_if_cancelled, stop


async def _swallowing_loop(turns: list[int]) -> None:
    """A follower whose read turns the first CancelledError into a retry."""
    while True:
        raise_if_cancelled()
        turns.append(1)
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            continue  # what a retried TimeoutError does to a cancel


async def test_a_swallowed_cancel_still_ends_the_loop() -> None:
    """The loop sees the task is cancelling at its next turn and stops."""
    turns: list[int] = []
    task = asyncio.create_task(_swallowing_loop(turns))
    await asyncio.sleep(0.03)
    assert await stop([task], within=2) == set()
    assert task.cancelled()
    assert turns


async def test_stop_gives_up_after_its_bound() -> None:
    """A task that ignores every cancel comes back still running, not awaited."""
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.01)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await stop([task], within=0.1) == {task}
    assert not task.done()
    release.set()
    await task


async def test_stop_of_nothing_returns_at_once() -> None:
    """No tasks: nothing to wait for."""
    assert await stop([]) == set()
