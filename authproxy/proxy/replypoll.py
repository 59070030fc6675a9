"""Poll for an upstream reply's head a moment before the event loop sleeps.

Why: when the loop has nothing to do it blocks in ``epoll_wait``, and a reply
that arrives then must wake it. On a VM such as Firecracker every such wake-up
is an inter-processor interrupt from the upstream's CPU and a context switch
back in, and at one connection that cost sits on every request's path twice.
Linux's answer, ``SO_BUSY_POLL``, needs a NAPI device (loopback and veth, the
sidecar's links, have none), so the poll is done here: while a reply head is
awaited the loop keeps a ready callback, which makes its next pass poll with
a zero timeout instead of sleeping. Measured at one connection on the bench
host, the lean client's added p50 fell by about 0.05 ms for no more CPU per
request (bench/results/issue14-levers.md); the bench's other rows are loaded,
so the loop never sleeps there anyway.

Bounds, so an idle or slow proxy does not spin:

- only while some reply head is awaited, and at most ``window`` seconds after
  the last request was sent (``upstream.reply_poll_us``; 0 turns it off);
- after a wait that outlasted the window (a model loading or generating), no
  request polls until a reply comes within the window again, as the kernel's
  haltpoll governor stops polling a CPU whose wake-ups come late;
- polling never delays other work: it is one callback per pass, and every
  other ready connection is served in the same pass.
"""

from __future__ import annotations

import asyncio
import time


class ReplyPoll:
    """The reply-head poll of one lean client (one event loop)."""

    __slots__ = (
        "_deadline",
        "_loop",
        "_polling",
        "_quick",
        "passes",
        "waiting",
        "window",
    )

    def __init__(self, window: float) -> None:
        self.window = window
        self.waiting = 0
        self.passes = 0  # loop passes polled, for the tests
        self._quick = True  # did the last wait end within the window?
        self._deadline = 0.0
        self._polling = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def polling(self) -> bool:
        """Whether the loop polls instead of sleeping right now."""
        return self._polling

    def begin(self) -> float:
        """A request was sent and its reply head is awaited; returns the start."""
        now = time.monotonic()
        self.waiting += 1
        if self.window and self._quick:
            self._deadline = now + self.window
            if not self._polling:
                self._polling = True
                if self._loop is None:  # once: get_running_loop() is a getpid(2)
                    self._loop = asyncio.get_running_loop()
                self._loop.call_soon(self._pass, self._loop)
        return now

    def end(self, started: float) -> None:
        """The wait that ``begin`` returned ``started`` for is over, however."""
        self.waiting -= 1
        self._quick = time.monotonic() - started <= self.window

    def _pass(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.waiting and time.monotonic() < self._deadline:
            self.passes += 1
            loop.call_soon(self._pass, loop)
        else:
            self._polling = False
