"""Access policy at request time: scopes, model allow-lists, filtered listings."""

from __future__ import annotations

import time

import aiohttp
import structlog
from aiohttp import web

from authproxy.auth.principal import Principal
from authproxy.metering.exchange import Exchange
from authproxy.policy.names import ModelNameError, model_allowed, parse_model
from authproxy.policy.routes import path_model, requires_model
from authproxy.policy.rules import LISTINGS, filter_listing, missing_scope
from authproxy.proxy.body import BodyModels
from authproxy.proxy.headers import REQUEST_ID_HEADER, filter_response_headers
from authproxy.responses import json_error
from authproxy.web.appkeys import REQUEST_ID_KEY

log = structlog.stdlib.get_logger(__name__)


def check_scope(
    request: web.Request, ex: Exchange, principal: Principal
) -> web.Response | None:
    """Answer 403, naming the scope, if the key may not use this route class."""
    scope = missing_scope(principal.scopes, ex.route_class)
    if scope is None:
        return None
    return forbidden(
        request, ex, f"missing_scope:{scope}", f"this key lacks the {scope!r} scope"
    )


def forbidden(
    request: web.Request, ex: Exchange, reason: str, message: str
) -> web.Response:
    """Deny with 403 and a message naming what is missing."""
    ex.deny(reason)
    log.info("request_forbidden", reason=reason)
    return json_error(request, 403, message)


def check_model(
    request: web.Request, ex: Exchange, principal: Principal, body: BodyModels
) -> web.Response | None:
    """Apply the cloud scope and the allow-lists to every model the request names.

    The names are resolved as Ollama resolves them (``modelname``): the body's
    model fields, or the ``/v1/models/{model}`` path. Each must pass.
    """
    models = body.models
    named = path_model(request.path)
    if named is not None and named.strip():
        try:
            models = (parse_model(named),)
        except ModelNameError as err:
            ex.deny("model_invalid")
            return json_error(request, 400, f"model: {err}")
        ex.model = models[0].name
    if (
        not models
        and principal.model_rules
        and requires_model(request.path, ex.route_class)
    ):
        return forbidden(
            request, ex, "model_unchecked", "this key may only use named models"
        )
    cloud = body.remote or any(ref.cloud for ref in models)
    if cloud and "cloud" not in principal.scopes:
        return forbidden(
            request, ex, "missing_scope:cloud", "this key lacks the 'cloud' scope"
        )
    for ref in models:
        if not model_allowed(ref, principal.model_rules):
            return forbidden(
                request,
                ex,
                "model_not_allowed",
                f"model {ref.name!r} is not allowed for this key",
            )
    return None


def is_listing(request: web.Request, status: int) -> bool:
    """Tell whether the reply is a model listing the proxy must filter."""
    return request.method == "GET" and request.path in LISTINGS and status == 200


async def relay_listing(
    request: web.Request,
    reply: aiohttp.ClientResponse,
    ex: Exchange,
    rules: tuple[tuple[str, ...], ...],
) -> web.StreamResponse:
    """Send a model listing with the disallowed models removed."""
    ex.status = reply.status
    body = filter_listing(request.path, await reply.read(), rules)
    if body is None:
        ex.status = 502
        return json_error(request, 502, "unexpected listing from upstream")
    headers = filter_response_headers(reply.headers)
    headers.popall("Content-Length", None)
    headers[REQUEST_ID_HEADER] = request[REQUEST_ID_KEY]
    response = web.Response(status=reply.status, body=body, headers=headers)
    ex.bytes_out = len(body)
    ex.ttfb = time.monotonic() - ex.started
    return response
