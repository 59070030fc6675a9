"""Sign-in, sign-out, and the middleware that checks the session on every request.

Sign-in verifies the submitted admin key or admin JWT exactly as the admin
API verifies an ``Authorization`` header (``admin.auth.authenticate_admin``:
the same failure limiter, the same denials trail). Each later request
re-checks that the session is alive and its admin key still present, usable
and admin-scoped, and every POST carries the session's CSRF token.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Final
from urllib.parse import urlencode

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
from authproxy.auth.principal import VerifyFailedError, check_usable
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
    valid_form_token,
    valid_login_token,
)
from authproxy.console.edge import error_page
from authproxy.console.render import render
from authproxy.console.session import COOKIE, COOKIE_PATH, Session, new_session_id
from authproxy.errors import Denied
from authproxy.keys.record import KeyRecord
from authproxy.responses import Handler
from authproxy.web.appkeys import VERIFIER_KEY

log = structlog.stdlib.get_logger(__name__)

LOGIN: Final = "/admin/ui/login"
HOME: Final = "/admin/ui/keys"
# Reachable without a session.
PUBLIC: Final = frozenset({"console_login", "console_static"})
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


def _cookie(
    response: web.StreamResponse,
    request: web.Request,
    name: str,
    value: str,
    max_age: float | None = None,
) -> None:
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


def _still_admin(record_: KeyRecord | None, session: Session, moment: Any) -> bool:
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
    session_id = request.cookies.get(COOKIE)
    session = await _live_session(request, session_id) if session_id else None
    if session is not None and session_id is not None:
        request[SESSION_KEY] = session
        request[SESSION_ID_KEY] = session_id
        request[ACTOR_KEY] = session.actor
        structlog.contextvars.bind_contextvars(actor=session.actor)
    name = request.match_info.route.name
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
    _cookie(response, request, LOGIN_COOKIE, cookie)
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
    _cookie(response, request, COOKIE, session_id, config.max_age)
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
