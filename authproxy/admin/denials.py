"""Failed admin authentications in the admin trail, folded per client and window.

The first failure of a kind (client, actor, reason) is written at once. The
ones that follow within ``window`` seconds are only counted, and one record
with their count is written when the window closes, or at shutdown. A flood
of bad credentials therefore writes a few records a window, not one each, and
takes the trail's file lock just as rarely.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from authproxy.auth.bruteforce import client_bucket
from authproxy.metering.trail import record_action
from authproxy.times import Clock, format_timestamp, utc_now

MAX_WINDOWS: Final = 1000
# Past MAX_WINDOWS open windows, new clients share one per actor and reason.
MANY_CLIENTS: Final = None

Kind = tuple[str | None, str, str]  # client bucket, actor, reason


@dataclass(slots=True)
class _Window:
    handle: asyncio.TimerHandle
    count: int = 0  # failures folded in after the first
    first: str = ""
    last: str = ""


class DenialTrail:
    """Write failed admin authentications to the admin trail, aggregated."""

    def __init__(
        self,
        path: Path,
        *,
        window: float,
        max_windows: int = MAX_WINDOWS,
        clock: Clock = utc_now,
        replica: str | None = None,
    ) -> None:
        self.path = path
        self.replica = replica
        self.window = window
        self.max_windows = max_windows
        self._clock = clock
        self._windows: dict[Kind, _Window] = {}
        self._writes: set[asyncio.Task[None]] = set()

    async def denied(
        self,
        *,
        client: str | None,
        actor: str,
        reason: str,
        request_id: str | None,
    ) -> None:
        """Record one failed admin authentication (written, or counted)."""
        kind: Kind = (client_bucket(client) if client else None, actor, reason)
        if kind not in self._windows and len(self._windows) >= self.max_windows:
            kind = (MANY_CLIENTS, actor, reason)
        window = self._windows.get(kind)
        if window is not None:
            stamp = format_timestamp(self._clock())
            window.count += 1
            window.first = window.first or stamp
            window.last = stamp
            return
        loop = asyncio.get_running_loop()
        handle = loop.call_later(self.window, self._close, kind)
        self._windows[kind] = _Window(handle)
        await self._write(
            kind, {"reason": reason, "count": 1}, client=client, request_id=request_id
        )

    def _close(self, kind: Kind) -> None:
        window = self._windows.pop(kind, None)
        if window is None or not window.count:
            return
        task = asyncio.get_running_loop().create_task(self._summary(kind, window))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _summary(self, kind: Kind, window: _Window) -> None:
        detail = {
            "reason": kind[2],
            "count": window.count,
            "first": window.first,
            "last": window.last,
        }
        await self._write(kind, detail, client=kind[0], request_id=None)

    async def _write(
        self,
        kind: Kind,
        detail: dict[str, Any],
        *,
        client: str | None,
        request_id: str | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            None,
            lambda: record_action(
                self.path,
                actor=kind[1],
                action="auth",
                source="api",
                result="denied",
                detail=detail,
                request_id=request_id,
                client=client,
                replica=self.replica,
            ),
        )

    async def close(self) -> None:
        """Write every open window's count now (at shutdown)."""
        for kind in list(self._windows):
            self._windows[kind].handle.cancel()
            self._close(kind)
        if self._writes:
            await asyncio.gather(*self._writes)
