"""What happened in one request, and the middleware that writes its audit record."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from aiohttp import web

from authproxy.metering.bounds import (
    MAX_CLIENT,
    MAX_METHOD,
    MAX_MODEL,
    MAX_PATH,
    MAX_REASON,
    clip,
)
from authproxy.metering.usage import Usage
from authproxy.policy.routes import RouteClass, classify, is_metered
from authproxy.proxy.headers import client_address
from authproxy.responses import Handler, json_error
from authproxy.times import format_timestamp
from authproxy.web.appkeys import (
    AUDIT_KEY,
    CLOCK_KEY,
    EXCHANGE_KEY,
    LIFECYCLE_KEY,
    METRICS_KEY,
    PRINCIPAL_KEY,
    REQUEST_ID_KEY,
    UPSTREAM_KEY,
)
from authproxy.web.health import PUBLIC_ROUTES

log = structlog.stdlib.get_logger(__name__)


@dataclass(slots=True)
class Exchange:
    """Facts about one request, filled in by the middlewares and the handler."""

    started: float
    started_at: datetime
    route_class: RouteClass
    outcome: str = "completed"
    reason: str | None = None
    presented_key_id: str | None = None
    client: str | None = None
    scheme: str | None = None
    model: str | None = None
    prompt_estimate: int = 0
    # The output cap the request asked for (num_predict, max_tokens, ...), if any.
    max_output: int | None = None
    status: int | None = None
    usage: Usage | None = None
    streamed: bool = False
    bytes_in: int = 0
    bytes_out: int = 0
    ttfb: float | None = None
    _tokens: tuple[int, int, bool] | None = None

    def deny(self, reason: str, key_id: str | None = None) -> None:
        """Mark the request as rejected by the proxy."""
        self.outcome = "denied"
        self.reason = reason
        if key_id is not None:
            self.presented_key_id = key_id

    def tokens(self) -> tuple[int, int, bool]:
        """Return ``(prompt, completion, exact)`` under the estimate rule.

        Exact counts from the response win. Requests that consume no tokens
        (denied, non-inference routes, refused upstream) count as exactly 0.
        Otherwise the prompt is estimated from the request text (chars / 4)
        and the completion from the content chunks seen, marked inexact.
        """
        if self._tokens is None:
            self._tokens = self._count_tokens()
        return self._tokens

    def _count_tokens(self) -> tuple[int, int, bool]:
        usage = self.usage
        if self.outcome == "denied" or not is_metered(self.route_class):
            return 0, 0, True
        if usage is not None and usage.exact:
            return usage.prompt_tokens or 0, usage.completion_tokens or 0, True
        if usage is None and self.outcome not in {
            "upstream_timeout",
            "client_disconnected",
        }:
            return 0, 0, True  # never reached a generating upstream
        if usage is not None and not usage.chunks and (self.status or 0) >= 400:
            return 0, 0, True  # Ollama refused before generating
        return self.prompt_estimate, usage.chunks if usage else 0, False


def client_of(request: web.Request) -> str:
    """Return the client address (X-Forwarded-For believed from trusted peers)."""
    peer = request.remote or ""
    trusted = request.app[UPSTREAM_KEY].trusted_proxies
    if not trusted:
        return peer
    return client_address(peer, request.headers.getall("X-Forwarded-For", []), trusted)


def build_record(request: web.Request, ex: Exchange, now: float) -> dict[str, Any]:
    """Return the audit record of a finished request, secrets excluded.

    Strings the client chooses are cut to the bounds in ``authproxy.metering.bounds``,
    so one request adds at most a few KB to the log.
    """
    principal = request.get(PRINCIPAL_KEY)
    usage = ex.usage
    prompt, completion, exact = ex.tokens()
    client = ex.client
    if client is None:
        client = client_of(request)
    model = ex.model or (usage.model if usage else None)
    return {
        "ts": format_timestamp(ex.started_at),
        "request_id": request.get(REQUEST_ID_KEY),
        "key_id": principal.key_id if principal else ex.presented_key_id,
        "key_name": principal.key_name if principal else None,
        "scheme": principal.scheme if principal else ex.scheme,
        "client": clip(client, MAX_CLIENT),
        "method": clip(request.method, MAX_METHOD),
        "path": clip(request.rel_url.raw_path, MAX_PATH),
        "route": ex.route_class.value,
        "model": clip(model, MAX_MODEL),
        "status": ex.status,
        "stream": ex.streamed,
        "outcome": ex.outcome,
        "reason": clip(ex.reason, MAX_REASON),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "usage_exact": exact,
        "total_duration": usage.total_duration if usage else None,
        "load_duration": usage.load_duration if usage else None,
        "prompt_eval_duration": usage.prompt_eval_duration if usage else None,
        "eval_duration": usage.eval_duration if usage else None,
        "ttfb_ms": round(ex.ttfb * 1000, 3) if ex.ttfb is not None else None,
        "duration_ms": round((now - ex.started) * 1000, 3),
        "bytes_in": ex.bytes_in,
        "bytes_out": ex.bytes_out,
    }


@web.middleware
async def audit_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Track the request in an Exchange and append its audit record at the end."""
    if request.match_info.route.name in PUBLIC_ROUTES:
        return await handler(request)
    ex = Exchange(
        started=time.monotonic(),
        started_at=request.app[CLOCK_KEY](),
        route_class=classify(request.path),
    )
    request[EXCHANGE_KEY] = ex
    writer = request.app.get(AUDIT_KEY)
    response: web.StreamResponse | None = None
    try:
        if writer is not None and writer.config.required and not writer.healthy:
            ex.deny("audit_unavailable")
            response = json_error(request, 503, "audit log unavailable")
            return response
        response = await handler(request)
        return response  # noqa: TRY300 - the finally needs `response` set
    except asyncio.CancelledError:
        # Cancelled: the client left, or a graceful stop ran out of time.
        stopping = request.app[LIFECYCLE_KEY].stopping
        ex.outcome = "shutdown" if stopping else "client_disconnected"
        raise
    finally:
        if response is not None:
            _finish_from_response(ex, response)
        now = time.monotonic()
        if writer is not None:
            writer.append(build_record(request, ex, now))
        request.app[METRICS_KEY].observe(
            ex, request.get(PRINCIPAL_KEY), now - ex.started
        )


def _finish_from_response(ex: Exchange, response: web.StreamResponse) -> None:
    """Fill in what the handler did not: our own replies (401, 413, 502, ...)."""
    if ex.status is None:
        ex.status = response.status
    body = response.body if isinstance(response, web.Response) else None
    if isinstance(body, bytes) and not ex.bytes_out:
        ex.bytes_out = len(body)
