"""Background tasks: stop them within a bound, and notice a cancellation that was lost.

A task blocked in a Redis read can lose its cancellation: on Python 3.11 a
cancel that lands in the same loop turn as the read's own timeout comes out
of ``asyncio.timeout`` as ``TimeoutError`` (an ``OSError``), which redis-py
retries and our loops treat as a Redis failure. The task is then still marked
as cancelling but never sees ``CancelledError`` again, and a shutdown that
awaits it waits forever. So loops check ``cancel_requested`` each turn, and
shutdowns use ``stop``, which waits a bounded time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final

# Long enough for a loop turn (a blocking Redis read is at most ~1 s).
STOP_TIMEOUT: Final = 5.0


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` if the running task was asked to stop.

    Raises:
        asyncio.CancelledError: ``cancel()`` was called on the current task,
            even if the ``CancelledError`` it sent was swallowed on the way.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop(
    tasks: Iterable[asyncio.Task[Any]], within: float = STOP_TIMEOUT
) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait for them to end, at most ``within`` seconds.

    Returns:
        The tasks still running after ``within`` (empty when all ended).
    """
    waiting = set(tasks)
    for task in waiting:
        task.cancel()
    if not waiting:
        return set()
    _, pending = await asyncio.wait(waiting, timeout=within)
    return pending
