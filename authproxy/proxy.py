"""The catch-all handler: forward upstream, stream the reply back unchanged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import structlog
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from authproxy.authorize import check_model, check_scope, is_listing, relay_listing
from authproxy.exchange import Exchange
from authproxy.headers import (
    REQUEST_ID_HEADER,
    TrustedProxies,
    filter_response_headers,
    forward_request_headers,
)
from authproxy.principal import Principal
from authproxy.ratelimit import reserve_tokens
from authproxy.requestbody import BodyLimit, read_model_body
from authproxy.responses import json_error
from authproxy.routes import is_metered, reads_model
from authproxy.state import (
    CLIENT_SESSION_KEY,
    EXCHANGE_KEY,
    LIFECYCLE_KEY,
    PRINCIPAL_KEY,
    REQUEST_ID_KEY,
    STREAMS_KEY,
    UPSTREAM_KEY,
)
from authproxy.usage import UsageParser

log = structlog.stdlib.get_logger(__name__)

_STREAM_TYPES = ("application/x-ndjson", "text/event-stream")
SMALL_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class Upstream:
    """Everything the handler needs to know about the upstream, computed once."""

    origin: URL
    host_header: str
    trusted_proxies: TrustedProxies
    max_body_size: int
    response_timeout: float
    idle_timeout: float
    include_usage: bool = False

    client_timeout: aiohttp.ClientTimeout = aiohttp.ClientTimeout()


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
    """Check policy, forward one request, relay the response chunk by chunk."""
    upstream = request.app[UPSTREAM_KEY]
    ex = request[EXCHANGE_KEY]
    url = upstream_url(upstream.origin, request.raw_path)
    if url is None:
        ex.deny("invalid_request_target")
        return json_error(request, 400, "invalid request target")
    principal = request[PRINCIPAL_KEY]
    denied = check_scope(request, ex, principal)
    if denied is not None:
        return denied
    peer = request.remote or ""
    headers = forward_request_headers(
        request.headers,
        upstream_host=upstream.host_header,
        peer=peer,
        scheme=request.scheme,
        request_id=request[REQUEST_ID_KEY],
        trusted_peer=peer in upstream.trusted_proxies,
    )
    limit = BodyLimit(upstream.max_body_size)
    body = await _request_body(request, ex, headers, limit, upstream)
    if isinstance(body, web.Response):
        return body
    denied = check_model(request, ex, principal)
    if denied is not None:
        return denied
    denied = reserve_tokens(request, ex)
    if denied is not None:
        return denied
    return await _forward(request, ex, url, headers, body, limit, principal)


async def _forward(  # noqa: PLR0917 - one request's parts, passed once
    request: web.Request,
    ex: Exchange,
    url: URL,
    headers: CIMultiDict[str],
    body: bytes | AsyncIterator[bytes] | None,
    limit: BodyLimit,
    principal: Principal,
) -> web.StreamResponse:
    """Send the request upstream and relay the reply; map failures to 502/504."""
    upstream = request.app[UPSTREAM_KEY]
    session = request.app[CLIENT_SESSION_KEY]
    try:
        async with session.request(
            request.method,
            url,
            headers=headers,
            data=body,
            allow_redirects=False,
            timeout=upstream.client_timeout,
        ) as reply:
            if principal.model_rules and is_listing(request, reply.status):
                return await relay_listing(request, reply, ex, principal.model_rules)
            return await _relay(request, reply, ex, upstream.idle_timeout)
    except asyncio.CancelledError:
        # handler_cancellation: the client left while we waited or relayed,
        # or a graceful stop ran out of time.
        if request.app[LIFECYCLE_KEY].stopping:
            ex.outcome = "shutdown"
            log.warning("request_cut_at_shutdown")
        else:
            ex.outcome = "client_disconnected"
            log.info("client_disconnected")
        raise
    except TimeoutError:
        ex.outcome = "upstream_timeout"
        log.warning("upstream_timeout", phase="response_headers")
        return json_error(request, 504, "upstream timed out")
    except (aiohttp.ClientError, OSError) as err:
        ex.bytes_in = limit.seen or ex.bytes_in
        if limit.exceeded:
            ex.deny("body_too_large")
            return json_error(request, 413, "request body too large")
        ex.outcome = "upstream_error"
        log.warning("upstream_failed", error=type(err).__name__)
        return json_error(request, 502, "upstream unavailable")


async def _request_body(
    request: web.Request,
    ex: Exchange,
    headers: CIMultiDict[str],
    limit: BodyLimit,
    upstream: Upstream,
) -> bytes | AsyncIterator[bytes] | web.Response | None:
    """Return the body to send: bytes for model routes, else a bounded stream."""
    if not request.body_exists:
        return None
    length = request.content_length
    if length is not None and length > upstream.max_body_size:
        ex.deny("body_too_large")
        return json_error(request, 413, "request body too large")
    if request.method == "POST" and reads_model(request.path, ex.route_class):
        # The model name is needed before forwarding (audit, allow-lists),
        # so these JSON bodies are read whole; Ollama buffers them too.
        try:
            body = await read_model_body(request, ex, upstream.include_usage)
        except web.HTTPRequestEntityTooLarge:
            ex.deny("body_too_large")
            return json_error(request, 413, "request body too large")
        headers["Content-Length"] = str(len(body))
        return body
    if length is not None and length <= SMALL_BODY:
        body = await request.read()  # cheaper than streaming a few bytes
        ex.bytes_in = len(body)
        return body
    if length is not None:
        headers["Content-Length"] = str(length)
    return limit.relay(request.content, ex)


async def _relay(
    request: web.Request,
    reply: aiohttp.ClientResponse,
    ex: Exchange,
    idle_timeout: float,
) -> web.StreamResponse:
    """Stream the upstream reply to the client byte for byte, metering it."""
    connection = reply.connection
    if connection is not None and connection.protocol is not None:
        connection.protocol.read_timeout = idle_timeout
    content_type = reply.headers.get("Content-Type", "")
    ex.status = reply.status
    ex.streamed = content_type.startswith(_STREAM_TYPES)
    parser = UsageParser(content_type) if is_metered(ex.route_class) else None
    response = web.StreamResponse(
        status=reply.status,
        reason=reply.reason,
        headers=filter_response_headers(reply.headers),
    )
    response.headers[REQUEST_ID_HEADER] = request[REQUEST_ID_KEY]
    await response.prepare(request)
    ex.ttfb = time.monotonic() - ex.started
    streams = request.app[STREAMS_KEY]
    streams.add(response)
    content = reply.content
    try:
        while True:
            try:
                chunk = await content.readany()
            except (TimeoutError, aiohttp.ClientError) as err:
                timed_out = isinstance(err, TimeoutError)
                ex.outcome = "upstream_timeout" if timed_out else "upstream_error"
                _abort(request, reply, err)
                return response
            try:
                if not chunk:
                    await response.write_eof()
                    return response
                await response.write(chunk)
            except ConnectionError:
                reply.close()
                ex.outcome = "client_disconnected"
                log.info("client_disconnected")
                return response
            ex.bytes_out += len(chunk)
            if parser is not None:
                parser.feed(chunk)
    except asyncio.CancelledError:
        reply.close()
        raise
    finally:
        streams.discard(response)
        if parser is not None:
            ex.usage = parser.finish()
            _judge_stream(ex)


def _judge_stream(ex: Exchange) -> None:
    """A completed stream with an error line or no terminator is a stream error."""
    usage = ex.usage
    if ex.outcome != "completed" or usage is None or (ex.status or 0) >= 400:
        return  # an error status already says it failed
    if usage.failed or (usage.streamed and not usage.terminated):
        ex.outcome = "stream_error"


def _abort(
    request: web.Request, reply: aiohttp.ClientResponse, err: BaseException
) -> None:
    """End the client's stream without its terminator so it can tell it was cut."""
    reply.close()
    log.warning("upstream_failed", error=type(err).__name__, phase="body")
    if request.transport is not None:
        request.transport.close()
