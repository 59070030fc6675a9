"""Per-request helpers of the console: the clock, the proxy app, the session."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

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
from authproxy.keys.record import KeyRecord
from authproxy.keys.store import StoreRef
from authproxy.web.appkeys import KEY_BACKEND_KEY, WATCHER_KEY

T = TypeVar("T")


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


def key_url(record: KeyRecord) -> str:
    """Return the console page of a key."""
    return f"/admin/ui/keys/{record.id}"


def key_store(request: web.Request) -> StoreRef:
    """Return the key store the admin API writes to (the file, or Redis)."""
    return main_app(request)[KEY_BACKEND_KEY].store


async def blocking(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking store operation (argon2, file or Redis writes) in the executor."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(func, *args, **kwargs))


async def applied(request: web.Request) -> None:
    """Put a store change in service now (revocations act within a second)."""
    await main_app(request)[WATCHER_KEY].reload(force=True)
