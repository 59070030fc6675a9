"""CSRF tokens of the console's forms.

Every POST form carries a hidden ``csrf_token``. A signed-in form's token is
an HMAC of the session's CSRF secret, so it is useless without the session
cookie, which ``SameSite=Strict`` keeps off cross-site requests anyway (the
guard refuses cross-site writes by ``Origin``/``Sec-Fetch-Site`` as a third
line). Before sign-in there is no session: the login form uses a
double-submit cookie, ``authproxy_console_csrf``, whose HMAC the form echoes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

from authproxy.console.session import Session

LOGIN_COOKIE: Final = "authproxy_console_csrf"
FIELD: Final = "csrf_token"
_FORM_LABEL: Final = b"authproxy console form v1"
_LOGIN_LABEL: Final = b"authproxy console login v1"
_LOGIN_COOKIE_RE_LEN: Final = 43  # token_urlsafe(32)


def new_secret() -> str:
    """Return a fresh random secret (a session's CSRF secret, the login cookie)."""
    return secrets.token_urlsafe(32)


def _mac(secret: str, label: bytes) -> str:
    return hmac.new(secret.encode(), label, hashlib.sha256).hexdigest()


def form_token(session: Session) -> str:
    """Return the token the session's forms carry."""
    return _mac(session.csrf, _FORM_LABEL)


def login_token(cookie: str) -> str:
    """Return the token the login form carries for the pre-session ``cookie``."""
    return _mac(cookie, _LOGIN_LABEL)


def valid_form_token(session: Session, presented: str | None) -> bool:
    """Tell whether ``presented`` is the session's form token (constant time)."""
    return presented is not None and hmac.compare_digest(
        form_token(session).encode(), presented.encode()
    )


def valid_login_token(cookie: str | None, presented: str | None) -> bool:
    """Tell whether ``presented`` matches the login cookie (constant time)."""
    if not cookie or presented is None or len(cookie) != _LOGIN_COOKIE_RE_LEN:
        return False
    return hmac.compare_digest(login_token(cookie).encode(), presented.encode())
