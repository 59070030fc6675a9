"""Mount the console under ``/admin/ui/`` on the admin listener.

``setup_console(admin_app)`` builds the console sub-application and adds it
to the admin API's application. Page families register their routes with
one ``setup_<pages>(console)`` call each, in ``create_console_app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from authproxy.admin.app import create_admin_app
from authproxy.admin.auth import MAIN_APP_KEY
from authproxy.config.console import ConsoleConfig
from authproxy.config.model import Config
from authproxy.console.access import HOME, console_session_middleware
from authproxy.console.appkeys import CONSOLE_CONFIG_KEY, SESSIONS_KEY, TEMPLATES_KEY
from authproxy.console.context import see_other
from authproxy.console.edge import console_edge_middleware
from authproxy.console.headers import setup_security_headers
from authproxy.console.keypages import setup_key_pages
from authproxy.console.render import STATIC, template_environment
from authproxy.console.session import session_store
from authproxy.console.signin import setup_signin
from authproxy.times import Clock, utc_now
from authproxy.web.appkeys import CONFIG_KEY

PREFIX: Final = "/admin/ui/"


def create_console_app(config: Config, console: ConsoleConfig) -> web.Application:
    """Build the console sub-application (mounted by ``setup_console``).

    Raises:
        KeyStoreError: the Redis session store cannot be set up.
    """
    # Order matters: the edge first, so every error below it, a missing
    # session included, is answered as a page; then the session check,
    # which every handler relies on.
    app = web.Application(
        middlewares=[console_edge_middleware, console_session_middleware]
    )
    app[CONSOLE_CONFIG_KEY] = console
    app[TEMPLATES_KEY] = template_environment()
    app[SESSIONS_KEY] = session_store(config)
    app.cleanup_ctx.append(_sessions_ctx)
    setup_security_headers(app)
    app.router.add_get("/", index, name="console_index")
    app.router.add_static("/static", STATIC, name="console_static")
    setup_signin(app)
    setup_key_pages(app)
    # The usage and live pages register here too (setup_usage_pages,
    # setup_live_pages), one line each.
    return app


async def _sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[SESSIONS_KEY].close()


async def index(request: web.Request) -> web.Response:
    """GET /admin/ui/: the keys page (the session middleware sends others to login)."""
    return see_other(HOME)


async def to_console(request: web.Request) -> web.Response:
    """GET / on the admin listener: the console."""
    return see_other(PREFIX)


def setup_console(admin_app: web.Application) -> None:
    """Mount the console on the admin API's application, unless it is disabled."""
    config = admin_app[MAIN_APP_KEY][CONFIG_KEY]
    if not config.admin.console.enabled:
        return
    admin_app.add_subapp(PREFIX, create_console_app(config, config.admin.console))
    # A browser pointed at the listener itself lands in the console, rather
    # than on a 401 the failure limiter would count against its address.
    admin_app.router.add_get("/", to_console, name="console_root")


def create_admin_listener_app(
    main_app: web.Application, *, clock: Clock = utc_now
) -> web.Application:
    """Build what the admin listener serves: the admin API with the console."""
    admin_app = create_admin_app(main_app, clock=clock)
    setup_console(admin_app)
    return admin_app
