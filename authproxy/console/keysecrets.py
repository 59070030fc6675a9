"""Key actions that end on a secret shown once: create, rotate, passwd, mint a JWT.

Each reads its form into the admin API's body shape, validates it with the
API's parser, runs the same ``keys.lifecycle`` operation in the executor, puts
the change in service at once and records it in the admin trail with
``source: console``. The answer is a page of its own holding the new token or
JWT (``Cache-Control: no-store``) with a copy button and a curl line; no
other page ever shows it.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from typing import Any, Final

from aiohttp import web

from authproxy.admin.auth import record
from authproxy.admin.body import (
    BadRequestError,
    parse_key_spec,
    parse_password_change,
    parse_rotation,
    parse_ttl,
)
from authproxy.admin.guard import request_host
from authproxy.auth.minting import mint_key_token
from authproxy.console.context import applied, blocking, key_store, main_app, now
from authproxy.console.keyforms import (
    confirmed,
    create_body,
    form_values_of,
    password_body,
    rotation_body,
    token_body,
)
from authproxy.console.render import render
from authproxy.errors import KeyStoreError, KeyStoreUnavailableError
from authproxy.keys.codec import describe
from authproxy.keys.lifecycle import create_key, find_key, format_when, rotate_key
from authproxy.keys.record import ALL_SCOPES, KeyRecord
from authproxy.keys.store import make_hasher
from authproxy.times import parse_timestamp
from authproxy.web.appkeys import CONFIG_KEY, KEY_BACKEND_KEY, VERIFIER_KEY

NO_STORE: Final = {"Cache-Control": "no-store"}
COPY_NOW: Final = "Copy the new token now: it is shown only once. "


async def new_key_form(
    request: web.Request,
    values: dict[str, Any],
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    """Render the new-key form with ``values`` (and what was wrong with them)."""
    return await render(
        request,
        "key_new.html",
        {"all_scopes": ALL_SCOPES, "values": values, "error": error},
        status=status,
    )


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
    form = await request.post()
    moment = now(request)
    config = main_app(request)[CONFIG_KEY]
    try:
        spec = parse_key_spec(create_body(form), moment)
        created = await blocking(
            create_key,
            key_store(request),
            make_hasher(config.keys.argon2),
            spec,
            now=moment,
        )
    except KeyStoreUnavailableError:
        raise
    except (BadRequestError, KeyStoreError) as err:
        # The form again, as filled in (but the password), saying what is wrong.
        return await new_key_form(request, form_values_of(form), str(err), 400)
    await applied(request)
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


async def _rotate(
    request: web.Request, action: str, grace: timedelta, **secret: str | None
) -> web.Response:
    config = main_app(request)[CONFIG_KEY]
    moment = now(request)
    rotated = await blocking(
        rotate_key,
        key_store(request),
        make_hasher(config.keys.argon2),
        request.match_info["id"],
        grace=grace,
        now=moment,
        **secret,
    )
    await applied(request)
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
    keys = await blocking(main[KEY_BACKEND_KEY].load_signing)
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


def setup_secret_actions(app: web.Application) -> None:
    """Add the routes of the actions that show a secret."""
    r = app.router
    r.add_post("/keys", create, name="console_create_key")
    for name, handler in (("rotate", rotate), ("passwd", passwd), ("token", token)):
        r.add_post(f"/keys/{{id}}/{name}", handler, name=f"console_{name}_key")
