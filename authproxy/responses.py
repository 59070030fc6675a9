"""Error replies in Ollama's ``{"error": ...}`` shape, and the handler type.

Only the edge of each listener (``web.edge``, ``admin.edge``) turns errors
into these replies; everything below it raises ``errors.Denied`` instead.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def dumps(value: object) -> str:
    """Encode compact JSON, as Ollama (Go) does."""
    return json.dumps(value, separators=(",", ":"))


def json_error(
    status: int,
    message: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
) -> web.Response:
    """Return ``{"error": message}`` with ``status`` and any extra headers."""
    response = web.json_response({"error": message}, status=status, dumps=dumps)
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        response.headers.add(name, value)
    return response
