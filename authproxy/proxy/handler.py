"""Forward one authenticated request: the proxy's handler, read top to bottom.

resolve the target, require the route's scope, read the body, require the
models it names, reserve its tokens, send it upstream, relay the reply. Each
refusal is a ``Denied`` and each upstream failure an ``UpstreamError``, both
raised to the edge (``web.edge``), which answers them.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Final

import aiohttp
import structlog
from aiohttp import hdrs, web
from multidict import CIMultiDict
from yarl import URL

from authproxy.auth.principal import Principal
from authproxy.errors import Denied, UpstreamError
from authproxy.metering.exchange import Exchange
from authproxy.policy.routes import reads_model
from authproxy.policy.rules import ModelUse, require_models, require_scope
from authproxy.proxy.body import BodyLimit, read_body, read_model_body, send_continue
from authproxy.proxy.headers import forward_request_headers
from authproxy.proxy.listing import is_listing, relay_listing
from authproxy.proxy.relay import Reply, relay
from authproxy.proxy.request import ProxyRequest
from authproxy.proxy.upstream import (
    Forwarding,
    Upstream,
    failure_reason,
    public_url,
    resolve_target,
)

log = structlog.stdlib.get_logger(__name__)

SMALL_BODY: Final = 64 * 1024
LARGE_BODY: Final = 1024 * 1024
Body = bytes | io.BytesIO | AsyncIterator[bytes] | None
Reserve = Callable[[Exchange], Awaitable[None]]


async def forward(
    request: ProxyRequest,
    ex: Exchange,
    principal: Principal,
    fwd: Forwarding,
    reserve: Reserve | None,
) -> web.StreamResponse:
    """Check policy, forward one request, relay the response chunk by chunk.

    Args:
        request: the client's request.
        ex: its record.
        principal: who sent it (already authenticated and admitted).
        fwd: the upstream and the client session.
        reserve: reserves the request's tokens once they can be estimated
            (``None`` for a key without limits).

    Raises:
        Denied: the policy, the body or a quota refuses the request.
        UpstreamError: the upstream cannot be reached or does not answer.

    Returns:
        The relayed response.
    """
    upstream = fwd.upstream
    url = resolve_target(upstream.origin, request.raw_path)
    require_scope(principal.scopes, ex.route_class)
    peer = request.remote or ""
    headers = forward_request_headers(
        request.headers,
        upstream_host=upstream.host_header,
        peer=peer,
        scheme=request.scheme,
        request_id=ex.request_id,
        trusted_peer=peer in upstream.trusted_proxies,
    )
    if upstream.strip_origin:
        headers.popall(hdrs.ORIGIN, None)
    limit = BodyLimit(upstream.max_body_size, upstream.body_idle_timeout)
    body, use = await _request_body(request, ex, headers, limit, upstream)
    require_models(
        principal.scopes, principal.model_rules, request.path, ex.route_class, use
    )
    if reserve is not None:
        await reserve(ex)
    return await _send(request, ex, url, headers, body, limit, principal, fwd)


async def _send(  # noqa: PLR0917 - one request's parts, passed once
    request: ProxyRequest,
    ex: Exchange,
    url: URL,
    headers: CIMultiDict[str],
    body: Body,
    limit: BodyLimit,
    principal: Principal,
    fwd: Forwarding,
) -> web.StreamResponse:
    """Send the request upstream and relay the reply; map failures to 502/504.

    Raises:
        Denied: a streamed body passed its limit or stalled.
        UpstreamError: the connection failed, or no headers came in time.
    """
    upstream = fwd.upstream
    try:
        async with _call(fwd, request.method, url, headers, body) as reply:
            if principal.model_rules and is_listing(request, reply.status):
                return await relay_listing(request, reply, ex, principal.model_rules)
            return await relay(request, reply, ex, upstream.idle_timeout, fwd.streams)
    except (aiohttp.ClientError, OSError) as err:
        # A streamed body stopped by its own limit surfaces here, wrapped.
        ex.bytes_in = limit.seen or ex.bytes_in
        if limit.refusal is not None:
            raise limit.refusal from None
        reason = failure_reason(err)
        where = public_url(url)
        if isinstance(err, TimeoutError):
            log.warning(
                "upstream_timeout",
                upstream=where,
                reason=reason,
                phase="response_headers",
            )
            raise UpstreamError(
                504, "upstream timed out", "upstream_timeout", reason
            ) from None
        log.warning("upstream_failed", upstream=where, reason=reason, phase="connect")
        raise UpstreamError(
            502, "upstream unavailable", "upstream_error", reason
        ) from None


def _call(
    fwd: Forwarding, method: str, url: URL, headers: CIMultiDict[str], body: Body
) -> AbstractAsyncContextManager[Reply]:
    """Send through the lean client (``upstream.client: lean``) or aiohttp's."""
    if fwd.client is not None:
        return fwd.client.request(method, url, headers, body)
    return fwd.session.request(
        method,
        url,
        headers=headers,
        data=body,
        allow_redirects=False,
        timeout=fwd.upstream.client_timeout,
    )


async def _request_body(
    request: ProxyRequest,
    ex: Exchange,
    headers: CIMultiDict[str],
    limit: BodyLimit,
    upstream: Upstream,
) -> tuple[Body, ModelUse]:
    """Return the body to send: bytes for model routes, else a bounded stream.

    Raises:
        Denied: the body is too large, stalls, or cannot be read as Ollama reads
            it (see ``proxy.body``).
    """
    if not request.body_exists:
        return None, ModelUse()
    length = request.content_length
    if length is not None and length > upstream.max_body_size:
        raise Denied(413, "body_too_large", "request body too large")
    if reads_model(request.path):
        # The models are needed before forwarding (policy, audit), so these
        # bodies are read whole; Ollama buffers them too.
        body, use = await read_model_body(
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
            return io.BytesIO(body), use
        return body, use
    if length is not None and length <= SMALL_BODY:
        # Cheaper than streaming a few bytes.
        small = await read_body(request, ex, length, upstream.body_idle_timeout)
        return small, ModelUse()
    await send_continue(request)
    if length is not None:
        headers[hdrs.CONTENT_LENGTH] = str(length)
    return limit.relay(request.content, ex), ModelUse()
