"""The admin API: a JSON application on its own listener (never the proxy port)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Final, TypeVar

import structlog
from aiohttp import web

from authproxy.admin.auth import (
    ACTOR_KEY,
    MAIN_APP_KEY,
    admin_auth_middleware,
    record,
    setup_admin_auth,
)
from authproxy.admin.body import (
    parse_json_object,
    parse_key_spec,
    parse_password_change,
    parse_rotation,
    parse_ttl,
    parse_update,
)
from authproxy.admin.edge import admin_edge_middleware
from authproxy.admin.guard import (
    ALLOWED_HOSTS_KEY,
    HostAllowList,
    admin_guard_middleware,
)
from authproxy.admin.idempotency import IdempotencyCache
from authproxy.admin.openapi import OPENAPI
from authproxy.admin.sharedidem import idempotency_cache
from authproxy.admin.usage import usage_report
from authproxy.auth.minting import mint_key_token
from authproxy.keys.codec import describe
from authproxy.keys.lifecycle import (
    create_key,
    find_key,
    revoke_key,
    rotate_key,
    update_key,
)
from authproxy.keys.store import StoreRef, make_hasher
from authproxy.proxy.body import defer_expect
from authproxy.times import Clock, utc_now
from authproxy.web.appkeys import (
    CONFIG_KEY,
    KEY_BACKEND_KEY,
    METRICS_KEY,
    VERIFIER_KEY,
    WATCHER_KEY,
)
from authproxy.web.metrics import metrics_response

log = structlog.stdlib.get_logger(__name__)

T = TypeVar("T")
IDEMPOTENCY_KEY: Final = web.AppKey("idempotency", IdempotencyCache)
CLOCK_KEY: Final = web.AppKey["Clock"]("admin_clock")


def create_admin_app(
    main_app: web.Application, *, clock: Clock = utc_now
) -> web.Application:
    """Build the admin API for a running proxy application."""
    # Order matters: the edge first, so the request id is bound and every
    # error (a refusal, bad input, a bug) is answered in JSON in one place;
    # then the guard, which reads headers only and so runs before
    # authentication's argon2 work and admin-trail records; then
    # authentication.
    app = web.Application(
        middlewares=[
            admin_edge_middleware,
            admin_guard_middleware,
            admin_auth_middleware,
        ]
    )
    app[MAIN_APP_KEY] = main_app
    app[ALLOWED_HOSTS_KEY] = HostAllowList.from_config(main_app[CONFIG_KEY].admin)
    app[CLOCK_KEY] = clock
    # In this process, or in Redis for every replica (state.backend: redis).
    app[IDEMPOTENCY_KEY] = idempotency_cache(main_app[CONFIG_KEY])
    app.on_cleanup.append(_close_idempotency)
    setup_admin_auth(app)
    r = app.router
    r.add_get("/admin/openapi.json", openapi, name="openapi")
    r.add_post("/admin/keys", create, name="create_key", expect_handler=defer_expect)
    r.add_get("/admin/keys", list_keys, name="list_keys")
    r.add_get("/admin/keys/{id}", show, name="show_key")
    r.add_patch(
        "/admin/keys/{id}", update, name="update_key", expect_handler=defer_expect
    )
    r.add_post(
        "/admin/keys/{id}/rotate",
        rotate,
        name="rotate_key",
        expect_handler=defer_expect,
    )
    r.add_post(
        "/admin/keys/{id}/passwd",
        passwd,
        name="change_password",
        expect_handler=defer_expect,
    )
    r.add_post(
        "/admin/keys/{id}/revoke",
        revoke,
        name="revoke_key",
        expect_handler=defer_expect,
    )
    r.add_post(
        "/admin/keys/{id}/tokens", token, name="mint_token", expect_handler=defer_expect
    )
    r.add_get("/admin/usage", usage, name="usage")
    r.add_get("/metrics", metrics, name="metrics")
    return app


async def _close_idempotency(app: web.Application) -> None:
    await app[IDEMPOTENCY_KEY].close()


def _main(request: web.Request) -> web.Application:
    return request.app[MAIN_APP_KEY]


async def _blocking(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(func, *args, **kwargs))


async def _applied(request: web.Request) -> None:
    """Put a store change in service now (revocations act within a second)."""
    await _main(request)[WATCHER_KEY].reload(force=True)


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: the Prometheus exposition (admin listener, no credential)."""
    return metrics_response(_main(request)[METRICS_KEY])


async def openapi(request: web.Request) -> web.Response:
    """Serve the OpenAPI 3.1 document."""
    return web.json_response(OPENAPI)


async def create(request: web.Request) -> web.Response:
    """POST /admin/keys: create a key; the token is in this reply only."""
    body = await parse_json_object(request)
    config = _main(request)[CONFIG_KEY]
    now = request.app[CLOCK_KEY]()
    async with request.app[IDEMPOTENCY_KEY].attempt(
        request, "create", "", body
    ) as attempt:
        if attempt.replay is not None:
            return attempt.replay
        spec = parse_key_spec(body, now)
        created = await _blocking(
            create_key, _store(request), make_hasher(config.keys.argon2), spec, now=now
        )
        await _applied(request)
        await record(request, "create", created.record, {"scopes": list(spec.scopes)})
        return await attempt.keep(web.json_response(created.as_dict(now), status=201))


async def list_keys(request: web.Request) -> web.Response:
    """GET /admin/keys: every key, without hashes or secrets."""
    now = request.app[CLOCK_KEY]()
    table = _main(request)[VERIFIER_KEY].table
    return web.json_response({"keys": [describe(r, now) for r in table.records]})


async def show(request: web.Request) -> web.Response:
    """GET /admin/keys/{id}: one key (id or name)."""
    now = request.app[CLOCK_KEY]()
    record_ = find_key(_main(request)[VERIFIER_KEY].table, request.match_info["id"])
    return web.json_response(describe(record_, now))


async def update(request: web.Request) -> web.Response:
    """PATCH /admin/keys/{id}: change scopes, models, expiry, disabled, note."""
    now = request.app[CLOCK_KEY]()
    changes = parse_update(await parse_json_object(request), now)
    updated = await _blocking(
        update_key, _store(request), request.match_info["id"], changes, now=now
    )
    await _applied(request)
    await record(request, "update", updated, {"fields": sorted(changes)})
    return web.json_response(describe(updated, now))


async def rotate(request: web.Request) -> web.Response:
    """POST /admin/keys/{id}/rotate: new token or public key; old one for the grace."""
    body = await parse_json_object(request, allow_empty=True)
    ref = request.match_info["id"]
    async with request.app[IDEMPOTENCY_KEY].attempt(
        request, "rotate", ref, body
    ) as attempt:
        if attempt.replay is not None:
            return attempt.replay
        grace, public_key = parse_rotation(body)
        config = _main(request)[CONFIG_KEY]
        now = request.app[CLOCK_KEY]()
        rotated = await _blocking(
            rotate_key,
            _store(request),
            make_hasher(config.keys.argon2),
            ref,
            grace=grace,
            now=now,
            public_key=public_key,
        )
        await _applied(request)
        await record(
            request, "rotate", rotated.record, {"grace_seconds": grace.total_seconds()}
        )
        return await attempt.keep(web.json_response(rotated.as_dict(now)))


async def passwd(request: web.Request) -> web.Response:
    """POST /admin/keys/{id}/passwd: a password key's new password; old one for grace.

    No Idempotency-Key replay: the cache would have to keep a digest of the
    password, and a repeated change sets the same password anyway.
    """
    grace, password = parse_password_change(await parse_json_object(request))
    config = _main(request)[CONFIG_KEY]
    now = request.app[CLOCK_KEY]()
    changed = await _blocking(
        rotate_key,
        _store(request),
        make_hasher(config.keys.argon2),
        request.match_info["id"],
        grace=grace,
        now=now,
        password=password,
    )
    await _applied(request)
    await record(
        request, "passwd", changed.record, {"grace_seconds": grace.total_seconds()}
    )
    return web.json_response(changed.as_dict(now))


async def revoke(request: web.Request) -> web.Response:
    """POST /admin/keys/{id}/revoke: disable for good, effective at once."""
    now = request.app[CLOCK_KEY]()
    revoked, changed = await _blocking(
        revoke_key, _store(request), request.match_info["id"], now=now
    )
    await _applied(request)
    if changed:
        await record(request, "revoke", revoked, {})
    return web.json_response({**describe(revoked, now), "changed": changed})


async def token(request: web.Request) -> web.Response:
    """POST /admin/keys/{id}/tokens: a short-lived JWT with at most the key's rights."""
    body = await parse_json_object(request, allow_empty=True)
    config = _main(request)[CONFIG_KEY]
    now = request.app[CLOCK_KEY]()
    record_ = find_key(_main(request)[VERIFIER_KEY].table, request.match_info["id"])
    keys = await _blocking(_main(request)[KEY_BACKEND_KEY].load_signing)
    scopes, models = body.get("scopes"), body.get("models")
    minted = mint_key_token(
        keys,
        record_,
        ttl=parse_ttl(body),
        max_ttl=timedelta(seconds=config.jwt.max_ttl),
        now=now,
        scopes=scopes,
        models=models,
    )
    await record(
        request,
        "token",
        record_,
        {"ttl": body.get("ttl", "15m"), "scopes": minted["scopes"]},
    )
    return web.json_response(minted, status=201)


async def usage(request: web.Request) -> web.Response:
    """GET /admin/usage?since=&until=&by=: the audit log's numbers (admin.usage)."""
    return await usage_report(_main(request), request.query, request.app[CLOCK_KEY]())


def _store(request: web.Request) -> StoreRef:
    return _main(request)[KEY_BACKEND_KEY].store


__all__ = ["ACTOR_KEY", "create_admin_app"]
