"""Relay the upstream's reply to the client byte for byte, metering it as it passes."""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Final

import aiohttp
import structlog
from aiohttp import web

from authproxy.metering.exchange import Exchange
from authproxy.metering.usage import UsageParser
from authproxy.policy.routes import is_metered
from authproxy.proxy.headers import REQUEST_ID_HEADER, filter_response_headers
from authproxy.proxy.lean import LeanResponse
from authproxy.proxy.relayed import Relayed
from authproxy.proxy.request import ProxyRequest, start_response
from authproxy.proxy.upstream import failure_reason, public_url

log = structlog.stdlib.get_logger(__name__)

_STREAM_TYPES: Final = ("application/x-ndjson", "text/event-stream")
Reply = aiohttp.ClientResponse | LeanResponse


async def relay(
    request: ProxyRequest,
    reply: Reply,
    ex: Exchange,
    idle_timeout: float,
    streams: weakref.WeakSet[web.StreamResponse],
) -> web.StreamResponse:
    """Stream the upstream reply to the client byte for byte, metering it.

    Each chunk is written downstream first, then fed to the usage parser. A
    client that leaves closes the upstream request (the only signal that stops
    Ollama generating); an upstream that dies or goes quiet cuts the client's
    stream without its terminator.
    """
    _set_idle_timeout(reply, idle_timeout)
    content_type = reply.headers.get("Content-Type", "")
    ex.status = reply.status
    ex.streamed = content_type.startswith(_STREAM_TYPES)
    parser = UsageParser(content_type) if is_metered(ex.route_class) else None
    response = Relayed(status=reply.status, reason=reply.reason)
    filter_response_headers(reply.headers, response.headers)
    response.headers[REQUEST_ID_HEADER] = ex.request_id
    if _body_done(reply):
        # A reply that came whole is relayed without waiting: no open stream
        # to count (or to wait for at shutdown; a WeakSet entry costs ~1.5 µs).
        await _relay_whole(request, reply, response, ex, parser)
        return response
    await start_response(response, request)
    if not _body_ready(reply):
        request.writer.send_headers()  # nothing to send them with: now, for TTFB
    ex.ttfb = time.monotonic() - ex.started
    streams.add(response)
    content = reply.content
    try:
        while True:
            try:
                chunk = await content.readany()
            except (TimeoutError, aiohttp.ClientError) as err:
                _abort(request, reply, ex, err)
                return response
            try:
                if not chunk:
                    await response.write_eof()
                    return response
                await response.write(chunk)
            except ConnectionError:
                _client_left(reply, ex)
                return response
            ex.bytes_out += len(chunk)
            if parser is not None:
                parser.feed(chunk)
    except asyncio.CancelledError:
        reply.close()
        raise
    finally:
        streams.discard(response)
        _finish_usage(ex, parser)


async def _relay_whole(
    request: ProxyRequest,
    reply: Reply,
    response: Relayed,
    ex: Exchange,
    parser: UsageParser | None,
) -> None:
    """Relay a reply whose whole body is already here: one write, no stream."""
    try:
        try:
            body = await reply.content.readany()  # all of it, without waiting
        except (TimeoutError, aiohttp.ClientError) as err:  # (never, once whole)
            _abort(request, reply, ex, err)
            return
        try:
            if response.sends_whole(request, body):
                ex.ttfb = time.monotonic() - ex.started
                await response.send_whole(request, body)
            else:  # HEAD, 204, 304, a chunked upstream reply: prepare's way
                await start_response(response, request)
                ex.ttfb = time.monotonic() - ex.started
                if body:
                    await response.write(body)
                await response.write_eof()
        except ConnectionError:
            _client_left(reply, ex)
            return
        ex.bytes_out += len(body)
        if parser is not None:
            parser.feed(body)
    except asyncio.CancelledError:
        reply.close()
        raise
    finally:
        _finish_usage(ex, parser)


def _client_left(reply: Reply, ex: Exchange) -> None:
    """The client left mid-reply: the upstream reply is not read further."""
    reply.close()
    ex.outcome = "client_disconnected"
    log.info("client_disconnected")


def _finish_usage(ex: Exchange, parser: UsageParser | None) -> None:
    if parser is not None:
        ex.usage = parser.finish()
        _judge_stream(ex)


def _body_ready(reply: Reply) -> bool:
    """Tell whether body bytes (or its end) already came with the reply's head."""
    return isinstance(reply, LeanResponse) and reply.ready()


def _body_done(reply: Reply) -> bool:
    """Tell whether the whole body is here (nothing left to wait for)."""
    return isinstance(reply, LeanResponse) and reply.done()


def _set_idle_timeout(reply: Reply, idle_timeout: float) -> None:
    """Switch the reply's read timeout from the headers' wait to the body's."""
    if isinstance(reply, LeanResponse):
        reply.set_read_timeout(idle_timeout)
        return
    connection = reply.connection
    if connection is not None and connection.protocol is not None:
        connection.protocol.read_timeout = idle_timeout


def _judge_stream(ex: Exchange) -> None:
    """A completed stream with an error line or no terminator is a stream error."""
    usage = ex.usage
    if ex.outcome != "completed" or usage is None or (ex.status or 0) >= 400:
        return  # an error status already says it failed
    if usage.failed or (usage.streamed and not usage.terminated):
        ex.outcome = "stream_error"


def _abort(
    request: ProxyRequest, reply: Reply, ex: Exchange, err: BaseException
) -> None:
    """End the client's stream without its terminator so it can tell it was cut."""
    timed_out = isinstance(err, TimeoutError)
    ex.outcome = "upstream_timeout" if timed_out else "upstream_error"
    reply.close()
    log.warning(
        "upstream_failed",
        upstream=public_url(reply.url),
        reason=failure_reason(err),
        phase="body",
    )
    if request.transport is not None:
        request.transport.close()
