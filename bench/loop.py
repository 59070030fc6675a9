"""The event loop for the load side: uvloop when installed, else asyncio's.

Only the bench's own clients and the streamer use it, to keep the load side
cheap; authproxy runs its own default asyncio loop and never sees uvloop.
Set ``BENCH_UVLOOP=0`` to use asyncio's loop everywhere.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def uvloop_enabled() -> bool:
    """Tell whether the load side runs on uvloop."""
    if os.environ.get("BENCH_UVLOOP", "1") == "0":
        return False
    try:
        import uvloop  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh loop."""
    if uvloop_enabled():
        import uvloop  # noqa: PLC0415

        return uvloop.run(coro)
    return asyncio.run(coro)
