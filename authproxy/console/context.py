"""Per-request helpers of the console: the clock, the proxy app, the session."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from authproxy.admin.app import CLOCK_KEY
from authproxy.admin.auth import MAIN_APP_KEY
from authproxy.console.appkeys import (
    CONSOLE_CONFIG_KEY,
    SESSION_ID_KEY,
    SESSION_KEY,
    SESSIONS_KEY,
)
from authproxy.console.session import Session


def now(request: web.Request) -> datetime:
    """Return the admin listener's clock reading (tests move it by hand)."""
    return request.config_dict[CLOCK_KEY]()


def main_app(request: web.Request) -> web.Application:
    """Return the proxy application the admin listener manages."""
    return request.config_dict[MAIN_APP_KEY]


def current_session(request: web.Request) -> Session | None:
    """Return the request's signed-in session, if any."""
    return request.get(SESSION_KEY)


async def save_session(request: web.Request) -> None:
    """Store the request's session again (a flash message set or taken)."""
    session = request.get(SESSION_KEY)
    session_id = request.get(SESSION_ID_KEY)
    if session is None or session_id is None:
        return
    config = request.config_dict[CONSOLE_CONFIG_KEY]
    await request.config_dict[SESSIONS_KEY].save(
        session_id, session, config.idle_timeout
    )


async def flash(request: web.Request, message: str) -> None:
    """Keep ``message`` for the next page the session renders."""
    session = request.get(SESSION_KEY)
    if session is not None:
        session.flash = message
        await save_session(request)


def see_other(location: str) -> web.Response:
    """Return a 303 to ``location`` (a console path), for a page or after a write."""
    return web.Response(status=303, headers={"Location": location})
