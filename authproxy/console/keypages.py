"""The keys pages: the table of keys and the page of one key."""

from __future__ import annotations

from aiohttp import web

from authproxy.console.context import main_app, now
from authproxy.console.render import render
from authproxy.keys.codec import describe
from authproxy.web.appkeys import VERIFIER_KEY


async def keys_page(request: web.Request) -> web.Response:
    """GET /admin/ui/keys: every key, filtered and sorted."""
    moment = now(request)
    table = main_app(request)[VERIFIER_KEY].table
    rows = [describe(r, moment) for r in table.records]
    return await render(request, "keys.html", {"rows": rows})


def setup_key_pages(app: web.Application) -> None:
    """Add the keys routes."""
    app.router.add_get("/keys", keys_page, name="console_keys")
