"""The key actions of the console: the same operations, checks and trail as the API.

Each handler reads its form into the admin API's body shape, validates it with
the API's parser, runs the same ``keys.lifecycle`` operation in the executor,
puts the change in service at once, and records it in the admin trail with
``source: console``. Dangerous actions (rotate, passwd, disable, revoke)
need the confirmation box. Writes answer 303 to the key page with a flash
message; a new secret (token, JWT) is shown once on a page of its own.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from aiohttp import web

from authproxy.admin.auth import record
from authproxy.admin.body import (
    parse_key_spec,
    parse_password_change,
    parse_rotation,
    parse_ttl,
    parse_update,
)
from authproxy.admin.guard import request_host
from authproxy.auth.minting import mint_key_token
from authproxy.console.context import flash, main_app, now, see_other
from authproxy.console.keyforms import (
    changed_fields,
    confirmed,
    create_body,
    password_body,
    rotation_body,
    token_body,
    update_body,
)
from authproxy.console.render import render
from authproxy.keys.codec import describe
from authproxy.keys.lifecycle import (
    create_key,
    find_key,
    format_when,
    revoke_key,
    rotate_key,
    update_key,
)
from authproxy.keys.record import KeyRecord
from authproxy.keys.store import StoreRef, make_hasher
from authproxy.times import parse_timestamp
from authproxy.web.appkeys import CONFIG_KEY, KEY_BACKEND_KEY, VERIFIER_KEY, WATCHER_KEY

T = TypeVar("T")
NO_STORE: Final = {"Cache-Control": "no-store"}
COPY_NOW: Final = "Copy the new token now: it is shown only once. "


async def _blocking(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(func, *args, **kwargs))


def _store(request: web.Request) -> StoreRef:
    return main_app(request)[KEY_BACKEND_KEY].store


async def _applied(request: web.Request) -> None:
    """Put a store change in service now (revocations act within a second)."""
    await main_app(request)[WATCHER_KEY].reload(force=True)


def _key_url(record_: KeyRecord) -> str:
    return f"/admin/ui/keys/{record_.id}"


def proxy_base(request: web.Request) -> str:
    """Return the proxy's address for the curl line (scheme, host, port, root path)."""
    config = main_app(request)[CONFIG_KEY]
    host = config.listen.host
    try:
        unspecified = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        unspecified = not host
    if unspecified:
        # Listening everywhere: the name this browser used for the admin listener.
        host = request_host(request.host) or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.tls.cert else "http"
    return f"{scheme}://{host}:{config.listen.port}{config.server.root_path}"


async def _secret_page(
    request: web.Request,
    record_: KeyRecord,
    *,
    heading: str,
    secret: str | None,
    note: str,
    status: int = 200,
    expires: datetime | None = None,
) -> web.Response:
    curl = None
    if secret is not None:
        curl = (
            f"curl {proxy_base(request)}/api/tags -H 'Authorization: Bearer {secret}'"
        )
    return await render(
        request,
        "secret.html",
        {
            "heading": heading,
            "key": describe(record_, now(request)),
            "secret": secret,
            "curl": curl,
            "note": note,
            "expires": format_when(expires) if expires else None,
        },
        status=status,
        headers=NO_STORE,
    )


async def create(request: web.Request) -> web.Response:
    """POST /admin/ui/keys: create a key; its token is on this page only."""
    body = create_body(await request.post())
    moment = now(request)
    spec = parse_key_spec(body, moment)
    config = main_app(request)[CONFIG_KEY]
    created = await _blocking(
        create_key, _store(request), make_hasher(config.keys.argon2), spec, now=moment
    )
    await _applied(request)
    await record(
        request,
        "create",
        created.record,
        {"scopes": list(spec.scopes)},
        source="console",
    )
    note = {
        "token": "Copy the token now: it is shown only once.",
        "password": "Sign in to the proxy with the key's name and this password.",
        "ollama": "The ollama CLI with this public key signs its requests "
        "(OLLAMA_AUTH=1).",
    }[created.record.kind]
    return await _secret_page(
        request,
        created.record,
        heading=f"Key {created.record.name} created",
        secret=created.token,
        note=note,
        status=201,
    )


async def edit(request: web.Request) -> web.Response:
    """POST /admin/ui/keys/{id}/edit: scopes, models, expiry, limits, note."""
    moment = now(request)
    current = find_key(main_app(request)[VERIFIER_KEY].table, request.match_info["id"])
    changes = changed_fields(
        parse_update(update_body(await request.post()), moment),
        describe(current, moment),
    )
    if not changes:
        await flash(request, "Nothing changed.")
        return see_other(_key_url(current))
    updated = await _blocking(
        update_key, _store(request), current.id, changes, now=moment
    )
    await _applied(request)
    await record(
        request, "update", updated, {"fields": sorted(changes)}, source="console"
    )
    await flash(request, f"Saved: {', '.join(sorted(changes))}.")
    return see_other(_key_url(updated))


async def _set_disabled(request: web.Request, disabled: bool) -> web.Response:
    moment = now(request)
    updated = await _blocking(
        update_key,
        _store(request),
        request.match_info["id"],
        {"disabled": disabled},
        now=moment,
    )
    await _applied(request)
    await record(request, "update", updated, {"fields": ["disabled"]}, source="console")
    await flash(request, f"Key {updated.name} {'disabled' if disabled else 'enabled'}.")
    return see_other(_key_url(updated))


async def disable(request: web.Request) -> web.Response:
    """POST /admin/ui/keys/{id}/disable (confirmed): refused until enabled again."""
    confirmed(await request.post())
    return await _set_disabled(request, True)


async def enable(request: web.Request) -> web.Response:
    """POST /admin/ui/keys/{id}/enable: usable again."""
    return await _set_disabled(request, False)


async def revoke(request: web.Request) -> web.Response:
    """POST /admin/ui/keys/{id}/revoke (confirmed): disabled for good, at once."""
    confirmed(await request.post())
    revoked, changed = await _blocking(
        revoke_key, _store(request), request.match_info["id"], now=now(request)
    )
    await _applied(request)
    if changed:
        await record(request, "revoke", revoked, {}, source="console")
    await flash(
        request,
        f"Key {revoked.name} revoked." if changed else "The key was revoked already.",
    )
    return see_other(_key_url(revoked))


async def _rotate(
    request: web.Request, action: str, grace: timedelta, **secret: str | None
) -> web.Response:
    config = main_app(request)[CONFIG_KEY]
    moment = now(request)
    rotated = await _blocking(
        rotate_key,
        _store(request),
        make_hasher(config.keys.argon2),
        request.match_info["id"],
        grace=grace,
        now=moment,
        **secret,
    )
    await _applied(request)
    detail = {"grace_seconds": grace.total_seconds()}
    await record(request, action, rotated.record, detail, source="console")
    until = rotated.previous_valid_until
    old = f"The old one works until {format_when(until)}." if until else ""
    what = {"rotate": "rotated", "passwd": "has a new password"}[action]
    return await _secret_page(
        request,
        rotated.record,
        heading=f"Key {rotated.record.name} {what}",
        secret=rotated.token,
        note=(COPY_NOW if rotated.token else "") + old,
    )


async def rotate(request: web.Request) -> web.Response:
    """POST /admin/ui/keys/{id}/rotate (confirmed): a new token or public key."""
    form = await request.post()
    confirmed(form)
    grace, public_key = parse_rotation(rotation_body(form))
    return await _rotate(request, "rotate", grace, public_key=public_key)


async def passwd(request: web.Request) -> web.Response:
    """POST /admin/ui/keys/{id}/passwd (confirmed): a password key's new password."""
    form = await request.post()
    confirmed(form)
    grace, password = parse_password_change(password_body(form))
    return await _rotate(request, "passwd", grace, password=password)


async def token(request: web.Request) -> web.Response:
    """POST /admin/ui/keys/{id}/token: a short-lived JWT, shown once."""
    body = token_body(await request.post())
    main = main_app(request)
    moment = now(request)
    record_ = find_key(main[VERIFIER_KEY].table, request.match_info["id"])
    keys = await _blocking(main[KEY_BACKEND_KEY].load_signing)
    minted = mint_key_token(
        keys,
        record_,
        ttl=parse_ttl(body),
        max_ttl=timedelta(seconds=main[CONFIG_KEY].jwt.max_ttl),
        now=moment,
        scopes=body.get("scopes"),
        models=None,
    )
    await record(
        request,
        "token",
        record_,
        {"ttl": body["ttl"], "scopes": minted["scopes"]},
        source="console",
    )
    return await _secret_page(
        request,
        record_,
        heading=f"JWT for {record_.name}",
        secret=str(minted["token"]),
        note="Copy the JWT now: it is shown only once.",
        status=201,
        expires=parse_timestamp(str(minted["expires_at"])),
    )


def setup_key_actions(app: web.Application) -> None:
    """Add the key actions' routes (POST forms)."""
    r = app.router
    r.add_post("/keys", create, name="console_create_key")
    for name, handler in (
        ("edit", edit),
        ("rotate", rotate),
        ("passwd", passwd),
        ("token", token),
        ("disable", disable),
        ("enable", enable),
        ("revoke", revoke),
    ):
        r.add_post(f"/keys/{{id}}/{name}", handler, name=f"console_{name}_key")
