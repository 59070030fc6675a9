"""The catch-all handler: forward upstream, stream the reply back unchanged."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import structlog
from aiohttp import web
from yarl import URL

from authproxy.headers import (
    REQUEST_ID_HEADER,
    IPNetwork,
    filter_response_headers,
    forward_request_headers,
    is_trusted,
)
from authproxy.responses import json_error
from authproxy.state import (
    CLIENT_SESSION_KEY,
    REQUEST_ID_KEY,
    STREAMS_KEY,
    UPSTREAM_KEY,
)

log = structlog.stdlib.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Upstream:
    """Everything the handler needs to know about the upstream, computed once."""

    origin: URL
    host_header: str
    trusted_proxies: tuple[IPNetwork, ...]
    max_body_size: int
    response_timeout: float
    idle_timeout: float


class _BodyLimit:
    """Counts request body bytes as they stream and stops past the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen = 0
        self.exceeded = False

    async def relay(self, content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
        async for chunk in content.iter_any():
            self.seen += len(chunk)
            if self.seen > self.limit:
                self.exceeded = True
                raise web.HTTPRequestEntityTooLarge(
                    max_size=self.limit, actual_size=self.seen
                )
            yield chunk


def upstream_url(origin: URL, raw_path: str) -> URL | None:
    """Join the configured origin and the raw request target.

    Returns:
        The upstream URL, or ``None`` if the target is not origin-form or
        the result would leave the configured origin.
    """
    if not raw_path.startswith("/"):
        return None
    try:
        url = URL(str(origin) + raw_path, encoded=True)
    except ValueError:
        return None
    if (url.scheme, url.host, url.port) != (origin.scheme, origin.host, origin.port):
        return None
    return url


async def proxy_handler(request: web.Request) -> web.StreamResponse:
    """Forward one request and relay the response chunk by chunk."""
    upstream = request.app[UPSTREAM_KEY]
    url = upstream_url(upstream.origin, request.raw_path)
    if url is None:
        return json_error(request, 400, "invalid request target")
    peer = request.remote or ""
    request_id = request[REQUEST_ID_KEY]
    headers = forward_request_headers(
        request.headers,
        upstream_host=upstream.host_header,
        peer=peer,
        scheme=request.scheme,
        request_id=request_id,
        trusted_peer=is_trusted(peer, upstream.trusted_proxies),
    )
    limit = _BodyLimit(upstream.max_body_size)
    body: AsyncIterator[bytes] | None = None
    if request.body_exists:
        length = request.content_length
        if length is not None:
            if length > upstream.max_body_size:
                return json_error(request, 413, "request body too large")
            headers["Content-Length"] = str(length)
        body = limit.relay(request.content)
    session = request.app[CLIENT_SESSION_KEY]
    try:
        async with session.request(
            request.method,
            url,
            headers=headers,
            data=body,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_read=upstream.response_timeout
            ),
        ) as reply:
            return await _relay(request, reply, upstream.idle_timeout)
    except asyncio.CancelledError:
        # handler_cancellation: the client left while we waited or relayed.
        log.info("client_disconnected")
        raise
    except TimeoutError:
        log.warning("upstream_timeout", phase="response_headers")
        return json_error(request, 504, "upstream timed out")
    except (aiohttp.ClientError, OSError) as err:
        if limit.exceeded:
            return json_error(request, 413, "request body too large")
        log.warning("upstream_failed", error=type(err).__name__)
        return json_error(request, 502, "upstream unavailable")


async def _relay(
    request: web.Request, reply: aiohttp.ClientResponse, idle_timeout: float
) -> web.StreamResponse:
    """Stream the upstream reply to the client, byte for byte."""
    connection = reply.connection
    if connection is not None and connection.protocol is not None:
        connection.protocol.read_timeout = idle_timeout
    response = web.StreamResponse(
        status=reply.status,
        reason=reply.reason,
        headers=filter_response_headers(reply.headers),
    )
    response.headers[REQUEST_ID_HEADER] = request[REQUEST_ID_KEY]
    await response.prepare(request)
    streams = request.app[STREAMS_KEY]
    streams.add(response)
    content = reply.content
    try:
        while True:
            try:
                chunk = await content.readany()
            except (TimeoutError, aiohttp.ClientError) as err:
                _abort(request, reply, "upstream_failed", err)
                return response
            try:
                if not chunk:
                    await response.write_eof()
                    return response
                await response.write(chunk)
            except ConnectionError:
                reply.close()
                log.info("client_disconnected")
                return response
    except asyncio.CancelledError:
        reply.close()
        raise
    finally:
        streams.discard(response)


def _abort(
    request: web.Request,
    reply: aiohttp.ClientResponse,
    event: str,
    err: BaseException,
) -> None:
    """End the client's stream without its terminator so it can tell it was cut."""
    reply.close()
    log.warning(event, error=type(err).__name__)
    if request.transport is not None:
        request.transport.close()
