"""Error responses in Ollama's ``{"error": ...}`` shape, and the error middleware."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping

import structlog
from aiohttp import web

from authproxy.proxy.headers import REQUEST_ID_HEADER
from authproxy.web.appkeys import REQUEST_ID_KEY

log = structlog.stdlib.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def dumps(value: object) -> str:
    """Encode compact JSON, as Ollama (Go) does."""
    return json.dumps(value, separators=(",", ":"))


def json_error(
    request: web.BaseRequest,
    status: int,
    message: str,
    headers: Mapping[str, str] | list[tuple[str, str]] | None = None,
) -> web.Response:
    """Return ``{"error": message}`` with the request id attached."""
    response = web.json_response({"error": message}, status=status, dumps=dumps)
    if headers:
        items = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in items:
            response.headers.add(name, value)
    request_id = request.get(REQUEST_ID_KEY)
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


@web.middleware
async def error_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Turn an unexpected error into a logged, JSON 500 (a bug, never routine)."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("request_failed")
        return json_error(request, 500, "internal error")
