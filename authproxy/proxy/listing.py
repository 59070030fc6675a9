"""Model listings for keys with an allow-list: the only replies the proxy rewrites."""

from __future__ import annotations

import time
from typing import Final

from aiohttp import web

from authproxy.errors import UpstreamError
from authproxy.metering.exchange import Exchange
from authproxy.policy.rules import LISTINGS, filter_listing
from authproxy.proxy.headers import REQUEST_ID_HEADER, filter_response_headers
from authproxy.proxy.relay import Reply
from authproxy.proxy.request import ProxyRequest

_OK: Final = 200


def is_listing(request: ProxyRequest, status: int) -> bool:
    """Tell whether the reply is a model listing the proxy must filter."""
    return request.method == "GET" and request.path in LISTINGS and status == _OK


async def relay_listing(
    request: ProxyRequest,
    reply: Reply,
    ex: Exchange,
    rules: tuple[tuple[str, ...], ...],
) -> web.Response:
    """Send a model listing with the disallowed models removed.

    Raises:
        UpstreamError: 502 when the reply is not a listing this understands;
            it is withheld, never passed on unfiltered.
    """
    ex.status = reply.status
    body = filter_listing(request.path, await reply.read(), rules)
    if body is None:
        raise UpstreamError(502, "unexpected listing from upstream")
    headers = filter_response_headers(reply.headers)
    headers.popall("Content-Length", None)
    headers[REQUEST_ID_HEADER] = ex.request_id
    response = web.Response(status=reply.status, body=body, headers=headers)
    ex.bytes_out = len(body)
    ex.ttfb = time.monotonic() - ex.started
    return response
