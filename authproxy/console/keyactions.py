"""Key actions answered by a page: edit, disable, enable, revoke; export, import.

The same operations, checks and trail as the admin API: each form is read
into the API's body shape and checked by its parser and the store, the
change is put in service at once and recorded with ``source: console``.
Disable and revoke need the confirmation box. Each answers 303 to the key's
page with a flash message.
"""

from __future__ import annotations

from aiohttp import web

from authproxy.admin.auth import record
from authproxy.admin.body import BadRequestError, parse_update
from authproxy.console.context import (
    applied,
    blocking,
    flash,
    key_store,
    key_url,
    main_app,
    now,
    see_other,
)
from authproxy.console.keyforms import changed_fields, confirmed, text, update_body
from authproxy.errors import KeyStoreError
from authproxy.keys.codec import describe
from authproxy.keys.lifecycle import find_key, revoke_key, update_key
from authproxy.keys.store import (
    KeyTable,
    dump_store,
    parse_store_file,
    read_or_empty,
    update_store,
)
from authproxy.web.appkeys import VERIFIER_KEY


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
        return see_other(key_url(current))
    updated = await blocking(
        update_key, key_store(request), current.id, changes, now=moment
    )
    await applied(request)
    await record(
        request, "update", updated, {"fields": sorted(changes)}, source="console"
    )
    await flash(request, f"Saved: {', '.join(sorted(changes))}.")
    return see_other(key_url(updated))


async def _set_disabled(request: web.Request, disabled: bool) -> web.Response:
    moment = now(request)
    updated = await blocking(
        update_key,
        key_store(request),
        request.match_info["id"],
        {"disabled": disabled},
        now=moment,
    )
    await applied(request)
    await record(request, "update", updated, {"fields": ["disabled"]}, source="console")
    await flash(request, f"Key {updated.name} {'disabled' if disabled else 'enabled'}.")
    return see_other(key_url(updated))


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
    revoked, changed = await blocking(
        revoke_key, key_store(request), request.match_info["id"], now=now(request)
    )
    await applied(request)
    if changed:
        await record(request, "revoke", revoked, {}, source="console")
    await flash(
        request,
        f"Key {revoked.name} revoked." if changed else "The key was revoked already.",
    )
    return see_other(key_url(revoked))


async def export(request: web.Request) -> web.Response:
    """POST /admin/ui/keys/export (confirmed): the store as a key file, to download.

    What ``authproxy keys export`` writes: every key with its argon2 hash (no
    token), in the key file's format, for ``keys import`` elsewhere. A POST
    with the CSRF token, not a link: nothing but a deliberate click fetches it.
    """
    confirmed(await request.post())
    table = await blocking(read_or_empty, key_store(request))
    await record(
        request, "export", None, {"keys": len(table.records)}, source="console"
    )
    return web.Response(
        text=dump_store(table),
        content_type="application/yaml",
        headers={
            "Content-Disposition": 'attachment; filename="keys.yaml"',
            "Cache-Control": "no-store",
        },
    )


async def import_keys(request: web.Request) -> web.Response:
    """POST /admin/ui/keys/import (confirmed, multipart): what ``keys import`` does.

    The uploaded key file is checked as the server checks its store, then put
    in the store in one atomic change; a store holding keys is replaced only
    with the ``replace`` box ticked.

    Raises:
        BadRequestError: no file, or not UTF-8 text.
        KeyStoreError: the file is not a valid key file, or keys would be replaced.
    """
    form = await request.post()
    confirmed(form)
    upload = form.get("file")
    if not isinstance(upload, web.FileField):
        raise BadRequestError("file: choose a key file (keys.yaml format)")
    try:
        content = upload.file.read().decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestError("file: not UTF-8 text") from None
    table = parse_store_file(content, "file").table
    replace = text(form, "replace") == "yes"

    def change(current: KeyTable) -> tuple[KeyTable, int]:
        if current.records and not replace:
            raise KeyStoreError(
                f"the store already holds {len(current.records)} key(s); "
                "tick 'replace' to replace them with the file's"
            )
        return table, len(current.records)

    replaced = await blocking(update_store, key_store(request), change)
    await applied(request)
    count = len(table.records)
    detail = {"keys": count, "replaced": replaced}
    await record(request, "import", None, detail, source="console")
    await flash(request, f"Imported {count} key(s); replaced {replaced}.")
    return see_other("/admin/ui/keys")


def setup_key_actions(app: web.Application) -> None:
    """Add the routes of the key page's actions (POST forms)."""
    r = app.router
    r.add_post("/keys/export", export, name="console_export_keys")
    r.add_post("/keys/import", import_keys, name="console_import_keys")
    for name, handler in (
        ("edit", edit),
        ("disable", disable),
        ("enable", enable),
        ("revoke", revoke),
    ):
        r.add_post(f"/keys/{{id}}/{name}", handler, name=f"console_{name}_key")
