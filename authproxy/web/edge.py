"""The edge of the proxy listener: one record per request, one place errors become HTTP.

The edge middleware runs first and finishes last. For every request it
assigns the request id and binds the log context. For every request but the
health probes it strips ``server.root_path`` (the rest of the pipeline sees
the request as if sent without it; outside it, 404), creates the ``Exchange``,
answers ``Denied`` and
``UpstreamError`` with ``{"error": ...}``, turns an unexpected exception into
a logged JSON 500 (a bug, never routine), and in its ``finally`` hands the
finished ``Exchange`` to ``web.finish``, which records it (audit log, usage
counters, live page, metrics) at the loop's next turn.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import Any, Final

import structlog
from aiohttp import web
from yarl import URL

from authproxy.errors import Denied, UpstreamError
from authproxy.metering.audit import AuditWriter
from authproxy.metering.exchange import Exchange
from authproxy.policy.routes import classify
from authproxy.proxy.headers import REQUEST_ID_HEADER, client_address, request_id
from authproxy.proxy.request import ProxyHandler, ProxyRequest, start_response
from authproxy.responses import json_error
from authproxy.web.appkeys import (
    AUDIT_KEY,
    CLOCK_KEY,
    CONFIG_KEY,
    EXCHANGE_KEY,
    FINISHER_KEY,
    LIFECYCLE_KEY,
    REQUEST_ID_KEY,
    UPSTREAM_KEY,
)
from authproxy.web.health import PUBLIC_ROUTES

log = structlog.stdlib.get_logger(__name__)

# The log fields of the request being handled (see bind_request).
REQUEST_CONTEXT: Final[contextvars.ContextVar[dict[str, Any] | None]] = (
    contextvars.ContextVar("authproxy_request", default=None)
)

# Refusals whose body may still be on its way (or never come): the answer is
# sent and the connection closed, rather than aiohttp reading the rest first.
_UNREAD_BODY: Final = frozenset({408, 413})
# Authentication logs its 401s (auth_failed), the limits their 429s.
_SELF_LOGGED: Final = frozenset({401, 429})


def bind_request(request: ProxyRequest) -> str:
    """Assign the request id and bind it, with the peer, to the log context.

    aiohttp runs each request in a task of its own, with a copy of the
    connection's context, so nothing an earlier request on the connection
    bound is seen here. One variable, set once, holds the request's fields
    (``server.logs`` merges it into every event); ``key_id`` and ``actor``
    are bound later with structlog's own variables.
    """
    rid = request_id(request.headers.get(REQUEST_ID_HEADER))
    request[REQUEST_ID_KEY] = rid
    REQUEST_CONTEXT.set({"request_id": rid, "peer": request.remote})
    return rid


def below_root(request: ProxyRequest, root: str) -> ProxyRequest | None:
    """Return the request as sent without ``root``, or ``None`` if outside it.

    Like uvicorn's ``--root-path``: ``/ollama/api/tags`` is seen as
    ``/api/tags`` by routing, policy, metering and the signature check;
    ``/ollama`` alone is ``/``. The prefix is matched on the raw path, so
    ``/ollama%2Fapi`` or ``/ollamax`` is outside it.
    """
    if not root:
        return request
    raw = request.raw_path
    if not raw.startswith(root):
        return None
    rest = raw[len(root) :]
    if rest[:1] not in {"", "/", "?"}:
        return None
    path, _, query = rest.partition("?")
    url = URL.build(path=path or "/", query_string=query, encoded=True)
    return request.clone(rel_url=url)


def _client(request: ProxyRequest) -> str:
    """Return the client address (X-Forwarded-For believed from trusted peers)."""
    peer = request.remote or ""
    trusted = request.app[UPSTREAM_KEY].trusted_proxies
    if not trusted:
        return peer
    return client_address(peer, request.headers.getall("X-Forwarded-For", []), trusted)


@web.middleware
async def edge_middleware(
    request: ProxyRequest, handler: ProxyHandler
) -> web.StreamResponse:
    """Track the request in an Exchange, answer its errors, record it at the end."""
    rid = bind_request(request)
    if request.match_info.route.name in PUBLIC_ROUTES:
        return await handler(request)
    app = request.app
    inside = below_root(request, app[CONFIG_KEY].server.root_path)
    if inside is not None:  # (a Request is falsy while it holds no state)
        request = inside
    ex = Exchange(
        request_id=rid,
        method=request.method,
        path=request.rel_url.raw_path,
        client=_client(request),
        started=time.monotonic(),
        started_at=app[CLOCK_KEY](),
        route_class=classify(request.path),
    )
    request[EXCHANGE_KEY] = ex
    response: web.StreamResponse | None = None
    try:
        if inside is None:
            response = await _denied(
                request, ex, Denied(404, "outside_root_path", "not found")
            )
            return response
        response = await _answer(request, handler, ex)
        return response
    finally:
        if response is not None:
            _finish_from_response(ex, response)
        app[FINISHER_KEY].add(ex, time.monotonic())


async def _answer(
    request: ProxyRequest, handler: ProxyHandler, ex: Exchange
) -> web.StreamResponse:
    """Run the handler; answer what it raises (a cancellation goes on)."""
    try:
        _require_audit(request.app.get(AUDIT_KEY))
        return await handler(request)
    except Denied as err:
        return await _denied(request, ex, err)
    except UpstreamError as err:
        if err.outcome is not None:
            ex.outcome = err.outcome
        return _error(ex, err.status, err.message)
    except web.HTTPException:
        raise
    except asyncio.CancelledError:
        # The client left while we waited or relayed, or a graceful stop ran
        # out of time (handler_cancellation).
        if request.app[LIFECYCLE_KEY].stopping:
            ex.outcome = "shutdown"
            log.warning("request_cut_at_shutdown")
        else:
            ex.outcome = "client_disconnected"
            log.info("client_disconnected")
        raise
    except Exception:
        log.exception("request_failed")
        return _error(ex, 500, "internal error")


def _require_audit(writer: AuditWriter | None) -> None:
    """With ``audit.required``, refuse new requests while the log cannot be written.

    Raises:
        Denied: 503 while the audit log is unhealthy.
    """
    if writer is not None and writer.config.required and not writer.healthy:
        raise Denied(503, "audit_unavailable", "audit log unavailable")


def _error(
    ex: Exchange, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> web.Response:
    ex.status = status
    response = json_error(status, message, headers)
    response.headers[REQUEST_ID_HEADER] = ex.request_id
    return response


async def _denied(request: ProxyRequest, ex: Exchange, err: Denied) -> web.Response:
    """Answer a refusal, note it in the record, and log it (401s log themselves)."""
    ex.deny(err.reason)
    if err.status not in _SELF_LOGGED:
        event = "request_forbidden" if err.status == 403 else "request_refused"
        log.info(event, reason=err.reason, status=err.status)
    response = _error(ex, err.status, err.message, err.headers)
    if err.status in _UNREAD_BODY:
        response.force_close()
        await start_response(response, request)
        await response.write_eof()
        if request.transport is not None:
            request.transport.close()
    return response


def _finish_from_response(ex: Exchange, response: web.StreamResponse) -> None:
    """Fill in what the handler did not: status and size of our own replies."""
    if ex.status is None:
        ex.status = response.status
    if ex.bytes_out:
        return  # relayed: counted as it passed
    body = response.body if isinstance(response, web.Response) else None
    if isinstance(body, bytes) and not ex.bytes_out:
        ex.bytes_out = len(body)
