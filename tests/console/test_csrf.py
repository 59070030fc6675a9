"""console.csrf: form tokens bound to a session, the login's double-submit token."""

from __future__ import annotations

from authproxy.console.csrf import (
    form_token,
    login_token,
    new_secret,
    valid_form_token,
    valid_login_token,
)
from authproxy.console.session import Session


def session(csrf: str) -> Session:
    """A session with the CSRF secret ``csrf``."""
    return Session(actor="ops", key_id="k", created=0.0, seen=0.0, csrf=csrf)


def test_a_form_token_is_valid_for_its_session_only() -> None:
    """Another session's token, a truncated one, none at all: refused."""
    mine, other = session(new_secret()), session(new_secret())
    token = form_token(mine)
    assert valid_form_token(mine, token)
    assert not valid_form_token(other, token)
    assert not valid_form_token(mine, token[:-1])
    assert not valid_form_token(mine, None)
    assert not valid_form_token(mine, "")
    assert mine.csrf not in token  # the secret itself never goes into a page


def test_the_login_token_must_match_its_cookie() -> None:
    """Double submit: the form's token is the HMAC of the cookie's value."""
    cookie = new_secret()
    token = login_token(cookie)
    assert valid_login_token(cookie, token)
    assert not valid_login_token(new_secret(), token)
    assert not valid_login_token(None, token)
    assert not valid_login_token("short", login_token("short"))
    assert not valid_login_token(cookie, None)
    assert token != cookie
