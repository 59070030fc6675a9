"""Idempotent retries of admin actions: the same ``Idempotency-Key``, the same reply.

A handler runs its action inside ``cache.attempt(...)``: a retry gets the
first reply back (``attempt.replay``), a first try claims the key, runs, and
hands its reply to ``attempt.keep``. A try that fails before ``keep`` gives
the claim back, so the next retry runs the action again. Two tries at once
with one key run the action once: the second waits for the first's reply.

``IdempotencyCache`` keeps the replies in this process (``state.backend:
file``); ``admin.sharedidem`` keeps them in Redis for every replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from authproxy.admin.auth import ACTOR_KEY
from authproxy.errors import Denied

MAX_IDEMPOTENT: Final = 1000
MAX_IDEMPOTENCY_KEY: Final = 200  # as the OpenAPI document says
# How long a retry waits for the first try of the same key to answer.
WAIT: Final = 5.0


@dataclass(frozen=True, slots=True)
class Slot:
    """One action's place in a cache: who asked, for what, under which key."""

    actor: str
    action: str
    ref: str
    given: str  # the Idempotency-Key: never stored, never logged
    digest: str  # sha256 of the request body
    # Tells this try's claim from another's (a lapsed claim taken again).
    attempt: str = field(default_factory=lambda: secrets.token_hex(16))


@dataclass(frozen=True, slots=True)
class Reply:
    """A remembered reply: status and JSON body."""

    status: int
    body: bytes

    def response(self) -> web.Response:
        """Return it as a fresh response."""
        return web.Response(
            status=self.status, body=self.body, content_type="application/json"
        )


@dataclass(slots=True)
class Attempt:
    """One try of an action: the earlier reply to replay, or the claim to fill."""

    slot: Slot | None
    replay: web.Response | None
    cache: IdempotencyCache
    kept: bool = field(default=False)

    async def keep(self, response: web.Response) -> web.Response:
        """Remember ``response`` for retries; return it."""
        if self.slot is not None and isinstance(response.body, bytes):
            await self.cache.keep(self.slot, Reply(response.status, response.body))
        self.kept = True
        return response


def reused() -> Denied:
    """Return the refusal of a key reused with another body."""
    return Denied(
        409, "idempotency_key_reused", "Idempotency-Key reused with another request"
    )


def in_progress() -> Denied:
    """Return the refusal of a retry whose first try has not answered yet."""
    return Denied(
        409,
        "idempotency_in_progress",
        "a request with this Idempotency-Key is still in progress; retry later",
        (("Retry-After", "1"),),
    )


class IdempotencyCache:
    """Replays the reply to a retried request with the same ``Idempotency-Key``.

    Replies are held in memory only (they may carry a new token) for
    ``admin.idempotency_ttl``; a restart forgets them.
    """

    def __init__(self, ttl: float, *, wait: float = WAIT) -> None:
        self.ttl = ttl
        self.wait = wait
        self._entries: OrderedDict[tuple[str, ...], tuple[float, str, Reply]] = (
            OrderedDict()
        )
        self._running: dict[tuple[str, ...], asyncio.Event] = {}

    @contextlib.asynccontextmanager
    async def attempt(
        self, request: web.Request, action: str, ref: str, body: dict[str, Any]
    ) -> AsyncIterator[Attempt]:
        """Replay the earlier reply, or claim the key for this try.

        Raises:
            Denied: 409 for a key reused with another body or still in
                progress elsewhere, 400 for an over-long key.
        """
        given = request.headers.get("Idempotency-Key")
        if not given:
            yield Attempt(None, None, self)
            return
        if len(given) > MAX_IDEMPOTENCY_KEY:
            raise Denied(
                400,
                "idempotency_key_too_long",
                f"Idempotency-Key: at most {MAX_IDEMPOTENCY_KEY} characters",
            )
        slot = Slot(request.get(ACTOR_KEY, ""), action, ref, given, body_digest(body))
        earlier = await self.claim(slot)
        attempt = Attempt(slot, earlier.response() if earlier else None, self)
        try:
            yield attempt
        finally:
            if earlier is None and not attempt.kept:
                await self.release(slot)

    @staticmethod
    def _index(slot: Slot) -> tuple[str, ...]:
        return (slot.actor, slot.action, slot.ref, slot.given)

    async def claim(self, slot: Slot) -> Reply | None:
        """Return the earlier reply, or ``None`` with the key claimed for this try.

        Raises:
            Denied: see ``attempt``.
        """
        index = self._index(slot)
        deadline = time.monotonic() + self.wait
        while (running := self._running.get(index)) is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise in_progress()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await running.wait()
        entry = self._entries.get(index)
        if entry is not None and entry[0] >= time.monotonic():
            if entry[1] != slot.digest:
                raise reused()
            return entry[2]
        self._running[index] = asyncio.Event()
        return None

    def _done(self, slot: Slot) -> None:
        running = self._running.pop(self._index(slot), None)
        if running is not None:
            running.set()

    async def keep(self, slot: Slot, reply: Reply) -> None:
        """Remember ``reply`` for retries of ``slot`` and wake who waits."""
        expires = time.monotonic() + self.ttl
        self._entries[self._index(slot)] = (expires, slot.digest, reply)
        while len(self._entries) > MAX_IDEMPOTENT:
            self._entries.popitem(last=False)
        self._done(slot)

    async def release(self, slot: Slot) -> None:
        """Give the claim back: the try failed, a retry runs the action again."""
        self._done(slot)

    async def close(self) -> None:
        """Release what the cache holds (nothing here)."""


def body_digest(body: dict[str, Any]) -> str:
    """Return the sha256 of a request body, the same for the same JSON."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
