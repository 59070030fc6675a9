"""The live page: the last requests this process finished, refreshing by itself.

The rows come from ``metering.recent`` (this process's window, not the
fleet's). ``static/console.js`` polls ``/admin/ui/live/rows``, the tbody as
an HTML fragment, every two seconds; without JavaScript the page reloads
itself every five (a ``<noscript>`` refresh).
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from authproxy.console.appkeys import TEMPLATES_KEY
from authproxy.console.context import main_app
from authproxy.console.render import render
from authproxy.web.appkeys import RECENT_KEY

ROWS_URL: Final = "/admin/ui/live/rows"
POLL_MS: Final = 2000


def live_rows(request: web.Request) -> list[dict[str, Any]]:
    """Return the display rows of the proxy's recent requests, newest first."""
    return main_app(request)[RECENT_KEY].rows()


async def live_page(request: web.Request) -> web.Response:
    """GET /admin/ui/live: the table of the last requests."""
    recent = main_app(request)[RECENT_KEY]
    return await render(
        request,
        "live.html",
        {
            "rows": live_rows(request),
            "rows_url": ROWS_URL,
            "every": POLL_MS,
            "size": recent.size,
        },
    )


async def live_rows_fragment(request: web.Request) -> web.Response:
    """GET /admin/ui/live/rows: the live table's tbody content, for the poller.

    Rendered apart from ``render``, which would take the session's flash
    message: a poll must not eat what the next page is to show.
    """
    template = request.config_dict[TEMPLATES_KEY].get_template("_live_rows.html")
    return web.Response(
        text=template.render(rows=live_rows(request)), content_type="text/html"
    )


def setup_live_pages(app: web.Application) -> None:
    """Add the live page and its rows fragment."""
    app.router.add_get("/live", live_page, name="console_live")
    app.router.add_get("/live/rows", live_rows_fragment, name="console_live_rows")
