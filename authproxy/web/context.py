"""The first middleware: request id and bound log context for every request."""

from __future__ import annotations

import structlog
from aiohttp import web

from authproxy.proxy.headers import REQUEST_ID_HEADER, request_id
from authproxy.responses import Handler
from authproxy.web.appkeys import REQUEST_ID_KEY


@web.middleware
async def request_context_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Assign the request id and bind it, with the peer, to the log context."""
    rid = request_id(request.headers.get(REQUEST_ID_HEADER))
    request[REQUEST_ID_KEY] = rid
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=rid, peer=request.remote)
    return await handler(request)
