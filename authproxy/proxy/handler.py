"""The catch-all handler: forward upstream, stream the reply back unchanged."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import unquote

import aiohttp
import structlog
from aiohttp import hdrs, web
from multidict import CIMultiDict
from yarl import URL

from authproxy.auth.principal import Principal
from authproxy.errors import Denied
from authproxy.limits.middleware import reserve_tokens
from authproxy.metering.exchange import Exchange
from authproxy.metering.usage import UsageParser
from authproxy.policy.authorize import (
    check_model,
    check_scope,
    is_listing,
    relay_listing,
)
from authproxy.policy.routes import is_metered, reads_model
from authproxy.proxy.body import (
    BodyLimit,
    BodyModels,
    read_body,
    read_model_body,
    send_continue,
)
from authproxy.proxy.headers import (
    REQUEST_ID_HEADER,
    TrustedProxies,
    filter_response_headers,
    forward_request_headers,
)
from authproxy.responses import json_error
from authproxy.web.appkeys import (
    CLIENT_SESSION_KEY,
    EXCHANGE_KEY,
    LIFECYCLE_KEY,
    PRINCIPAL_KEY,
    REQUEST_ID_KEY,
    STREAMS_KEY,
    UPSTREAM_KEY,
)

log = structlog.stdlib.get_logger(__name__)

_STREAM_TYPES = ("application/x-ndjson", "text/event-stream")
SMALL_BODY = 64 * 1024
LARGE_BODY = 1024 * 1024
_UNREAD_BODY = frozenset({408, 413})
_DOT_SEGMENT = re.compile(r"(?:^|/)\.{1,2}(?:/|$)")


@dataclass(frozen=True, slots=True)
class Upstream:
    """Everything the handler needs to know about the upstream, computed once."""

    origin: URL
    host_header: str
    trusted_proxies: TrustedProxies
    max_body_size: int
    response_timeout: float
    idle_timeout: float
    body_idle_timeout: float = 0.0
    include_usage: bool = False

    client_timeout: aiohttp.ClientTimeout = aiohttp.ClientTimeout()


def upstream_url(origin: URL, raw_path: str) -> URL | None:
    """Join the configured origin and the raw request target.

    Returns:
        The upstream URL, or ``None`` if the target is not origin-form, has
        dot segments (``/v1/models/../../api/pull``, also percent-encoded:
        another server on the way could resolve them to another route than
        the one the policy judged), or would leave the configured origin.
    """
    if not raw_path.startswith("/") or raw_path.startswith("//"):
        return None
    path = raw_path.partition("?")[0]
    if _DOT_SEGMENT.search(unquote(path)):
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
    limit = BodyLimit(upstream.max_body_size, upstream.body_idle_timeout)
    try:
        body, models = await _request_body(request, ex, headers, limit, upstream)
    except Denied as err:
        return await refuse(request, ex, err)
    denied = check_model(request, ex, principal, models)
    if denied is not None:
        return denied
    denied = reserve_tokens(request, ex)
    if denied is not None:
        return denied
    return await _forward(request, ex, url, headers, body, limit, principal)


async def refuse(request: web.Request, ex: Exchange, err: Denied) -> web.Response:
    """Answer a refused request with its JSON error and note why in the record."""
    ex.deny(err.reason)
    log.info("request_refused", reason=err.reason, status=err.status)
    response = json_error(request, err.status, err.message, list(err.headers) or None)
    if err.status in _UNREAD_BODY:
        # The rest of the body may never come (or is not wanted): send the
        # answer and close, instead of aiohttp's lingering read of the rest.
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        if request.transport is not None:
            request.transport.close()
    return response


async def _forward(  # noqa: PLR0917 - one request's parts, passed once
    request: web.Request,
    ex: Exchange,
    url: URL,
    headers: CIMultiDict[str],
    body: bytes | io.BytesIO | AsyncIterator[bytes] | None,
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
    except Denied as err:  # a streamed body's limit, if the client passed it on
        return await refuse(request, ex, err)
    except (aiohttp.ClientError, OSError) as err:
        # A streamed body stopped by its own limit surfaces here, wrapped.
        ex.bytes_in = limit.seen or ex.bytes_in
        if limit.refusal is not None:
            return await refuse(request, ex, limit.refusal)
        if isinstance(err, TimeoutError):
            ex.outcome = "upstream_timeout"
            log.warning("upstream_timeout", phase="response_headers")
            return json_error(request, 504, "upstream timed out")
        ex.outcome = "upstream_error"
        log.warning("upstream_failed", error=type(err).__name__)
        return json_error(request, 502, "upstream unavailable")


async def _request_body(
    request: web.Request,
    ex: Exchange,
    headers: CIMultiDict[str],
    limit: BodyLimit,
    upstream: Upstream,
) -> tuple[bytes | io.BytesIO | AsyncIterator[bytes] | None, BodyModels]:
    """Return the body to send: bytes for model routes, else a bounded stream.

    Raises:
        Denied: the body is too large, stalls, or cannot be read as Ollama reads
            it (see ``requestbody``).
    """
    if not request.body_exists:
        return None, BodyModels()
    length = request.content_length
    if length is not None and length > upstream.max_body_size:
        raise Denied(413, "body_too_large", "request body too large")
    if reads_model(request.path):
        # The models are needed before forwarding (policy, audit), so these
        # bodies are read whole; Ollama buffers them too.
        body, models = await read_model_body(
            request,
            ex,
            limit=upstream.max_body_size,
            idle=upstream.body_idle_timeout,
            include_usage=upstream.include_usage,
        )
        headers.popall(hdrs.CONTENT_ENCODING, None)  # sent on decoded, if zstd
        headers[hdrs.CONTENT_LENGTH] = str(len(body))
        if len(body) > LARGE_BODY:
            # aiohttp writes big bytes in one go and warns; a file object streams.
            return io.BytesIO(body), models
        return body, models
    if length is not None and length <= SMALL_BODY:
        # Cheaper than streaming a few bytes.
        small = await read_body(request, ex, length, upstream.body_idle_timeout)
        return small, BodyModels()
    await send_continue(request)
    if length is not None:
        headers[hdrs.CONTENT_LENGTH] = str(length)
    return limit.relay(request.content, ex), BodyModels()


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
