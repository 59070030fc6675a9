"""The console's door: every request's session, checked before any handler runs.

A request with a live session gets it (and its actor, for the admin trail);
one without is sent to sign-in (a page) or refused with 401 (a form). A
session is live while it has not expired (``Session.expired``) and its admin
key is still present, usable and admin-scoped; a key JWT's session also ends
when the key's tokens are revoked. Every signed-in POST must carry the
session's CSRF token, else 403.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final
from urllib.parse import urlencode

import structlog
from aiohttp import web

from authproxy.admin.auth import ACTOR_KEY
from authproxy.auth.principal import VerifyFailedError, check_usable
from authproxy.console.appkeys import (
    CONSOLE_CONFIG_KEY,
    SESSION_ID_KEY,
    SESSION_KEY,
    SESSIONS_KEY,
)
from authproxy.console.context import main_app, now, see_other
from authproxy.console.csrf import FIELD, valid_form_token
from authproxy.console.edge import error_page
from authproxy.console.session import COOKIE, COOKIE_PATH, Session
from authproxy.keys.record import KeyRecord
from authproxy.responses import Handler
from authproxy.web.appkeys import VERIFIER_KEY

log = structlog.stdlib.get_logger(__name__)

LOGIN: Final = "/admin/ui/login"
HOME: Final = "/admin/ui/keys"
# Reachable without a session.
STATIC: Final = "console_static"
PUBLIC: Final = frozenset({"console_login", STATIC})
# Where sign-in may send the browser back to: a console path, nothing else.
_NEXT_RE: Final = re.compile(r"/admin/ui/[A-Za-z0-9_./?=&%-]*")
CSRF_FAILED: Final = (
    "This form expired or did not come from this console (CSRF check): "
    "reload the page and try again."
)


def safe_next(value: str | None) -> str:
    """Return ``value`` if it is a console path to go back to, else the keys page."""
    if value and _NEXT_RE.fullmatch(value) and "//" not in value and ".." not in value:
        return value
    return HOME


def set_cookie(
    response: web.StreamResponse,
    request: web.Request,
    name: str,
    value: str,
    max_age: float | None = None,
) -> None:
    """Set a console cookie: HttpOnly, SameSite=Strict, /admin/ui/, Secure under TLS."""
    response.set_cookie(
        name,
        value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        max_age=int(max_age) if max_age is not None else None,
    )


async def _live_session(request: web.Request, session_id: str) -> Session | None:
    """Load the session and check it still stands; end it if it does not."""
    store = request.config_dict[SESSIONS_KEY]
    session = await store.load(session_id)
    if session is None:
        return None
    config = request.config_dict[CONSOLE_CONFIG_KEY]
    moment = now(request)
    alive = not session.expired(moment.timestamp(), config.idle_timeout, config.max_age)
    if alive and session.key_id is not None:
        alive = _still_admin(
            main_app(request)[VERIFIER_KEY].table.by_id.get(session.key_id),
            session,
            moment,
        )
    if not alive:
        await store.delete(session_id)
        log.info("console_session_ended", actor=session.actor)
        return None
    session.seen = moment.timestamp()
    await store.save(session_id, session, config.idle_timeout)
    return session


def _still_admin(record_: KeyRecord | None, session: Session, moment: datetime) -> bool:
    """Tell whether the session's key is present, usable and admin-scoped."""
    if record_ is None or "admin" not in record_.scopes:
        return False
    try:
        check_usable(record_, moment)
    except VerifyFailedError:
        return False
    # A key JWT's session ends when the key's tokens are revoked.
    after = record_.tokens_valid_after
    return not (
        session.jwt_iat is not None
        and after is not None
        and session.jwt_iat < after.timestamp()
    )


@web.middleware
async def console_session_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Attach the session; send the signed-out to sign-in; check CSRF on POSTs."""
    if request.path == "/admin/ui":
        # The cookie's path is /admin/ui/: the browser sends it only below.
        return see_other("/admin/ui/")
    name = request.match_info.route.name
    if name == STATIC:
        # No session work (nor a store write) for the stylesheet and script.
        return await handler(request)
    session_id = request.cookies.get(COOKIE)
    session = await _live_session(request, session_id) if session_id else None
    if session is not None and session_id is not None:
        request[SESSION_KEY] = session
        request[SESSION_ID_KEY] = session_id
        request[ACTOR_KEY] = session.actor
        structlog.contextvars.bind_contextvars(actor=session.actor)
    if session is None and name not in PUBLIC:
        if request.method in {"GET", "HEAD"}:
            response: web.StreamResponse = see_other(
                f"{LOGIN}?{urlencode({'next': request.path_qs})}"
            )
        else:
            response = await error_page(
                request, 401, "Your session has ended: sign in again."
            )
        if session_id:
            response.del_cookie(COOKIE, path=COOKIE_PATH)
        return response
    if session is not None and request.method == "POST" and name != "console_login":
        form = await request.post()
        presented = form.get(FIELD)
        if not valid_form_token(
            session, presented if isinstance(presented, str) else None
        ):
            return await error_page(request, 403, CSRF_FAILED)
    return await handler(request)
