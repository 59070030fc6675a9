"""Idempotent retries of admin actions: the same ``Idempotency-Key``, the same reply."""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from typing import Any, Final

from aiohttp import web

from authproxy.admin.auth import ACTOR_KEY
from authproxy.errors import Denied

MAX_IDEMPOTENT: Final = 1000
MAX_IDEMPOTENCY_KEY: Final = 200  # as the OpenAPI document says


class IdempotencyCache:
    """Replays the reply to a retried request with the same ``Idempotency-Key``.

    Replies are held in memory only (they may carry a new token) for
    ``admin.idempotency_ttl``; a restart forgets them.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: OrderedDict[tuple[str, ...], tuple[float, str, int, bytes]] = (
            OrderedDict()
        )

    def _key(
        self, request: web.Request, action: str, ref: str
    ) -> tuple[str, ...] | None:
        given = request.headers.get("Idempotency-Key")
        if not given:
            return None
        return (request.get(ACTOR_KEY, ""), action, ref, given)

    def get(
        self, request: web.Request, action: str, ref: str, body: dict[str, Any]
    ) -> web.Response | None:
        """Return the earlier reply for this key, or ``None``.

        Raises:
            Denied: 409 for a key reused with another body, 400 for an
                over-long key.
        """
        key = self._key(request, action, ref)
        if key is None:
            return None
        if len(key[-1]) > MAX_IDEMPOTENCY_KEY:
            raise Denied(
                400,
                "idempotency_key_too_long",
                f"Idempotency-Key: at most {MAX_IDEMPOTENCY_KEY} characters",
            )
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        _, digest, status, earlier = entry
        if digest != _digest(body):
            raise Denied(
                409,
                "idempotency_key_reused",
                "Idempotency-Key reused with another request",
            )
        return web.Response(
            status=status, body=earlier, content_type="application/json"
        )

    def put(
        self,
        request: web.Request,
        action: str,
        ref: str,
        body: dict[str, Any],
        response: web.Response,
    ) -> web.Response:
        """Remember ``response`` for retries; return it."""
        key = self._key(request, action, ref)
        if key is not None and isinstance(response.body, bytes):
            expires = time.monotonic() + self.ttl
            self._entries[key] = (
                expires,
                _digest(body),
                response.status,
                response.body,
            )
            while len(self._entries) > MAX_IDEMPOTENT:
                self._entries.popitem(last=False)
        return response


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
