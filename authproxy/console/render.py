"""Fill the console's jinja2 templates (autoescaped) into HTML responses."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import jinja2
from aiohttp import web

from authproxy import __version__
from authproxy.console.appkeys import TEMPLATES_KEY
from authproxy.console.context import current_session, save_session
from authproxy.console.csrf import form_token

TEMPLATES: Final = Path(__file__).with_name("templates")
STATIC: Final = Path(__file__).with_name("static")
# The navigation bar: (path, label). Usage and live are added by their pages.
NAV: Final = (
    ("/admin/ui/keys", "Keys"),
    ("/admin/ui/usage", "Usage"),
    ("/admin/ui/live", "Live"),
)


def template_environment() -> jinja2.Environment:
    """Return the environment: the package's templates, autoescape on, strict."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


async def render(
    request: web.Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """Render ``template`` with ``context`` plus what the layout needs.

    The layout gets the signed-in actor, the forms' CSRF token, the
    navigation and the flash message, which is taken from the session (it
    shows once).

    Returns:
        A ``text/html`` response with ``status``.
    """
    session = current_session(request)
    message = None
    if session is not None and session.flash is not None:
        message, session.flash = session.flash, None
        await save_session(request)
    values: dict[str, Any] = {
        "actor": session.actor if session else None,
        "csrf_token": form_token(session) if session else "",
        "nav": NAV,
        "path": request.path,
        "flash": message,
        "version": __version__,
        **(context or {}),
    }
    html = request.config_dict[TEMPLATES_KEY].get_template(template).render(values)
    return web.Response(
        text=html, status=status, content_type="text/html", headers=headers
    )
