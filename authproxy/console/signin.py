"""Sign-in and sign-out of the console.

Sign-in verifies the submitted admin key or admin JWT exactly as the admin
API verifies an ``Authorization`` header (``admin.auth.authenticate_admin``:
the same failure limiter, the same denials trail), then starts a session
under a fresh id; ``access`` checks it on every later request.
"""

from __future__ import annotations

import base64
from typing import Any

import jwt
import structlog
from aiohttp import web

from authproxy.admin.auth import (
    ACTOR_KEY,
    actor_of,
    authenticate_admin,
    record,
)
from authproxy.auth.credentials import Credential, CredentialError, parse_authorization
from authproxy.console.access import CSRF_FAILED, LOGIN, safe_next, set_cookie
from authproxy.console.appkeys import (
    CONSOLE_CONFIG_KEY,
    SESSION_ID_KEY,
    SESSION_KEY,
    SESSIONS_KEY,
)
from authproxy.console.context import main_app, now, see_other
from authproxy.console.csrf import (
    FIELD,
    LOGIN_COOKIE,
    login_token,
    new_secret,
    valid_login_token,
)
from authproxy.console.edge import error_page
from authproxy.console.render import render
from authproxy.console.session import COOKIE, COOKIE_PATH, Session, new_session_id
from authproxy.errors import Denied
from authproxy.keys.record import KeyRecord
from authproxy.web.appkeys import VERIFIER_KEY

log = structlog.stdlib.get_logger(__name__)


def _read_token(text: str) -> Credential:
    """Parse the sign-in field as an ``Authorization`` value would be.

    ``name:password`` is a password key (as HTTP Basic); anything else is a
    token or a JWT (as Bearer).

    Raises:
        CredentialError: empty or malformed.
    """
    value = text.strip()
    if not value:
        raise CredentialError("missing")
    if ":" in value:
        encoded = base64.b64encode(value.encode()).decode("ascii")
        return parse_authorization(f"Basic {encoded}")
    return parse_authorization(f"Bearer {value}")


async def login_form(request: web.Request) -> web.StreamResponse:
    """GET /admin/ui/login: the sign-in form (or home, when signed in)."""
    if request.get(SESSION_KEY) is not None:
        return see_other(safe_next(request.query.get("next")))
    return await _login_page(request, 200)


async def _login_page(
    request: web.Request,
    status: int,
    error: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    cookie = request.cookies.get(LOGIN_COOKIE)
    if not cookie or len(cookie) != len(new_secret()):
        cookie = new_secret()
    next_ = request.query.get("next")
    if request.method == "POST":
        form = await request.post()
        raw = form.get("next")
        next_ = raw if isinstance(raw, str) else None
    response = await render(
        request,
        "login.html",
        {"login_csrf": login_token(cookie), "next": safe_next(next_), "error": error},
        status=status,
        headers=headers,
    )
    set_cookie(response, request, LOGIN_COOKIE, cookie)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    """POST /admin/ui/login: verify the admin credential, start a session."""
    form = await request.post()
    presented = form.get(FIELD)
    if not valid_login_token(
        request.cookies.get(LOGIN_COOKIE),
        presented if isinstance(presented, str) else None,
    ):
        return await error_page(request, 403, CSRF_FAILED)
    token = form.get("token")
    text = token if isinstance(token, str) else ""
    try:
        principal = await authenticate_admin(request, lambda: _read_token(text))
    except Denied as err:
        if err.status == 429:
            return await _login_page(
                request,
                429,
                "Too many failed sign-ins from this address: wait and try again.",
                dict(err.headers),
            )
        if err.status in {401, 403}:
            return await _login_page(request, 401, "Sign-in failed")
        raise
    session = _new_session(request, principal, text.strip())
    session_id = new_session_id()
    config = request.config_dict[CONSOLE_CONFIG_KEY]
    await request.config_dict[SESSIONS_KEY].save(
        session_id, session, config.idle_timeout
    )
    old = request.cookies.get(COOKIE)
    if old:  # a new id at every sign-in: no session fixation
        await request.config_dict[SESSIONS_KEY].delete(old)
    request[ACTOR_KEY] = session.actor
    await record(
        request, "console_login", _key_of(request, session), {}, source="console"
    )
    response = see_other(safe_next(_text(form.get("next"))))
    set_cookie(response, request, COOKIE, session_id, config.max_age)
    response.del_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _new_session(request: web.Request, principal: Any, text: str) -> Session:
    moment = now(request).timestamp()
    session = Session(
        actor=actor_of(principal),
        key_id=principal.key_id,
        created=moment,
        seen=moment,
        csrf=new_secret(),
    )
    if principal.scheme == "jwt":
        # Verified by authenticate_admin already; read its times only.
        claims = jwt.decode(text, options={"verify_signature": False})
        session.jwt_exp = float(claims["exp"])
        session.jwt_iat = float(claims["iat"])
        if claims.get("typ") == "admin":
            session.key_id = None
    return session


def _key_of(request: web.Request, session: Session) -> KeyRecord | None:
    if session.key_id is None:
        return None
    return main_app(request)[VERIFIER_KEY].table.by_id.get(session.key_id)


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /admin/ui/logout: end the session (CSRF checked by the middleware)."""
    session = request[SESSION_KEY]
    await request.config_dict[SESSIONS_KEY].delete(request[SESSION_ID_KEY])
    await record(
        request, "console_logout", _key_of(request, session), {}, source="console"
    )
    response = see_other(LOGIN)
    response.del_cookie(COOKIE, path=COOKIE_PATH)
    return response


def setup_signin(app: web.Application) -> None:
    """Add the sign-in and sign-out routes."""
    login_resource = app.router.add_resource("/login", name="console_login")
    login_resource.add_route("GET", login_form)
    login_resource.add_route("POST", login)
    app.router.add_post("/logout", logout, name="console_logout")
