"""console.signin: sign-in with an admin key or JWT, sessions re-checked, sign-out."""

from __future__ import annotations

import json
from http import HTTPStatus
from pathlib import Path

import pytest

from authproxy.console.csrf import LOGIN_COOKIE
from authproxy.console.session import COOKIE
from authproxy.console.signin import safe_next
from tests.support.admin import Stack
from tests.support.auth import UNKNOWN_TOKEN
from tests.support.console import ConsoleClient


def trail(audit_path: Path) -> list[dict[str, object]]:
    """The admin trail's records."""
    path = audit_path.with_name("admin.jsonl")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_page_without_a_session_sends_the_browser_to_sign_in(
    browser: ConsoleClient,
) -> None:
    """GET /admin/ui/keys signed out: 303 to the login form, next= the page."""
    resp = await browser.client.get("/admin/ui/keys?q=x", allow_redirects=False)
    assert resp.status == HTTPStatus.SEE_OTHER
    assert (
        resp.headers["Location"] == "/admin/ui/login?next=%2Fadmin%2Fui%2Fkeys%3Fq%3Dx"
    )
    page = await browser.get("/admin/ui/")
    form = page.doc.by_id("login-form")
    token = form.find("input", name="token")
    assert token is not None
    assert token.attrs["type"] == "password"
    label = page.doc.find("label", for_="token")
    assert label is not None
    assert label.text == "Admin key or admin JWT"
    assert form.find("button", id="login-submit") is not None
    assert form.value_of("csrf_token")


async def test_signing_in_sets_a_strict_httponly_cookie_and_records_it(
    browser: ConsoleClient, console_stack: Stack, audit_path: Path
) -> None:
    """A valid admin key: 303 to the keys page, the session cookie, a trail record."""
    form = await browser.get("/admin/ui/login")
    resp = await browser.client.post(
        "/admin/ui/login",
        data={"csrf_token": form.csrf, "token": console_stack.admin_token},
        headers=browser.same_origin(),
        allow_redirects=False,
    )
    assert resp.status == HTTPStatus.SEE_OTHER
    assert resp.headers["Location"] == "/admin/ui/keys"
    cookie = resp.cookies[COOKIE]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/admin/ui/"
    assert not cookie["secure"]  # plain HTTP here; Secure under TLS
    assert len(cookie.value) >= 43
    page = await browser.get("/admin/ui/keys")
    assert page.status == HTTPStatus.OK
    assert page.doc.by_id("logout-form").find("span", class_="actor").text == "ops"  # type: ignore[union-attr]
    records = [r for r in trail(audit_path) if r["action"] == "console_login"]
    assert records
    assert records[0]["source"] == "console"
    assert records[0]["actor"] == "ops"


@pytest.mark.parametrize(
    "token",
    [UNKNOWN_TOKEN, "", "not a token at all", "ops:wrong-password-here"],
)
async def test_a_bad_credential_gets_the_form_again_with_401(
    browser: ConsoleClient, token: str
) -> None:
    """Unknown, empty, malformed: 401, the form, "Sign-in failed"; no session."""
    page = await browser.sign_in(token)
    assert page.status == HTTPStatus.UNAUTHORIZED
    assert page.doc.find(class_="error").text == "Sign-in failed"  # type: ignore[union-attr]
    assert page.doc.find(id="login-form") is not None
    assert browser.cookie(COOKIE) is None


async def test_a_key_without_the_admin_scope_cannot_sign_in(
    browser: ConsoleClient, console_stack: Stack
) -> None:
    """A working proxy key lacking 'admin' is refused like a wrong one."""
    status, user = await console_stack.api(
        "POST", "/admin/keys", {"name": "user", "scopes": ["inference", "models:read"]}
    )
    assert status == HTTPStatus.CREATED
    assert await console_stack.call(user["token"]) == HTTPStatus.OK
    page = await browser.sign_in(user["token"])
    assert page.status == HTTPStatus.UNAUTHORIZED
    assert page.doc.find(class_="error").text == "Sign-in failed"  # type: ignore[union-attr]


async def test_the_failure_limiter_blocks_sign_in_with_429(
    browser: ConsoleClient, console_stack: Stack
) -> None:
    """Enough failures from one address: 429 with Retry-After, even for a good key."""
    for _ in range(30):
        page = await browser.sign_in(UNKNOWN_TOKEN)
        if page.status == HTTPStatus.TOO_MANY_REQUESTS:
            break
    assert page.status == HTTPStatus.TOO_MANY_REQUESTS
    assert int(page.headers["Retry-After"]) > 0
    good = await browser.sign_in(console_stack.admin_token)
    assert good.status == HTTPStatus.TOO_MANY_REQUESTS


async def test_login_without_its_csrf_token_is_refused(
    browser: ConsoleClient, console_stack: Stack
) -> None:
    """No login CSRF cookie or a wrong token: 403 page, nothing verified."""
    await browser.get("/admin/ui/login")
    for token in ("", "0" * 64):
        resp = await browser.client.post(
            "/admin/ui/login",
            data={"csrf_token": token, "token": console_stack.admin_token},
            headers=browser.same_origin(),
        )
        assert resp.status == HTTPStatus.FORBIDDEN
        assert "CSRF" in await resp.text()
    assert browser.cookie(LOGIN_COOKIE) is not None
    assert browser.cookie(COOKIE) is None


async def test_a_cross_site_login_post_is_refused_by_the_guard(
    browser: ConsoleClient, console_stack: Stack
) -> None:
    """The admin guard's cross-site rule still covers the console's forms."""
    form = await browser.get("/admin/ui/login")
    resp = await browser.client.post(
        "/admin/ui/login",
        data={"csrf_token": form.csrf, "token": console_stack.admin_token},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert resp.status == HTTPStatus.FORBIDDEN


async def test_sign_in_goes_back_to_the_page_asked_for(
    browser: ConsoleClient, console_stack: Stack
) -> None:
    """next= a console page: sign-in lands there."""
    page = await browser.sign_in(
        console_stack.admin_token, next_="/admin/ui/keys?sort=id"
    )
    assert page.status == HTTPStatus.OK
    assert page.url == "/admin/ui/keys?sort=id"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/admin/ui/keys?q=a", "/admin/ui/keys?q=a"),
        ("https://evil.example/", "/admin/ui/keys"),
        ("//evil.example/admin/ui/", "/admin/ui/keys"),
        ("/admin/ui//evil.example", "/admin/ui/keys"),
        ("/admin/ui/../keys", "/admin/ui/keys"),
        ("/admin/keys", "/admin/ui/keys"),
        ("/admin/ui/\\evil", "/admin/ui/keys"),
        (None, "/admin/ui/keys"),
    ],
)
def test_next_is_only_ever_a_console_path(value: str | None, expected: str) -> None:
    """An open redirect is impossible: anything but a console path goes home."""
    assert safe_next(value) == expected


async def test_sign_out_ends_the_session_everywhere(
    signed_in: ConsoleClient, audit_path: Path
) -> None:
    """POST /admin/ui/logout: 303 to login; the old cookie no longer works."""
    old = signed_in.cookie(COOKIE)
    assert old is not None
    resp = await signed_in.client.post(
        "/admin/ui/logout",
        data={"csrf_token": signed_in.csrf or ""},
        headers=signed_in.same_origin(),
        allow_redirects=False,
    )
    assert resp.status == HTTPStatus.SEE_OTHER
    assert resp.headers["Location"] == "/admin/ui/login"
    again = await signed_in.client.get(
        "/admin/ui/keys", cookies={COOKIE: old}, allow_redirects=False
    )
    assert again.status == HTTPStatus.SEE_OTHER
    assert any(r["action"] == "console_logout" for r in trail(audit_path))


async def test_a_post_without_the_session_csrf_token_is_refused(
    signed_in: ConsoleClient,
) -> None:
    """Sign-out with a wrong token: 403, and the session goes on."""
    page = await signed_in.submit("/admin/ui/logout", csrf="f" * 64)
    assert page.status == HTTPStatus.FORBIDDEN
    assert (await signed_in.get("/admin/ui/keys")).status == HTTPStatus.OK


async def test_an_idle_session_ends(
    signed_in: ConsoleClient, console_stack: Stack
) -> None:
    """Unused past admin.console.idle_timeout (15m): back to sign-in."""
    console_stack.clock.advance(minutes=14)
    assert (await signed_in.get("/admin/ui/keys")).status == HTTPStatus.OK
    console_stack.clock.advance(minutes=14)  # used 14 min ago: still alive
    assert (await signed_in.get("/admin/ui/keys")).status == HTTPStatus.OK
    console_stack.clock.advance(minutes=16)
    resp = await signed_in.client.get("/admin/ui/keys", allow_redirects=False)
    assert resp.status == HTTPStatus.SEE_OTHER


async def test_a_session_ends_at_its_max_age_even_in_use(
    signed_in: ConsoleClient, console_stack: Stack
) -> None:
    """Used every 10 minutes, it still ends 8 hours after sign-in."""
    for _ in range(47):
        console_stack.clock.advance(minutes=10)
        assert (await signed_in.get("/admin/ui/keys")).status == HTTPStatus.OK
    console_stack.clock.advance(minutes=10)
    resp = await signed_in.client.get("/admin/ui/keys", allow_redirects=False)
    assert resp.status == HTTPStatus.SEE_OTHER


async def test_revoking_the_admin_key_ends_its_sessions(
    signed_in: ConsoleClient, console_stack: Stack
) -> None:
    """Each request re-checks the key: revoked through the API, signed out."""
    status, ops = await console_stack.api("GET", "/admin/keys/ops")
    assert status == HTTPStatus.OK
    status, root = await console_stack.api(
        "POST", "/admin/keys", {"name": "root", "scopes": ["admin"]}
    )
    assert status == HTTPStatus.CREATED
    status, _ = await console_stack.api(
        "POST", f"/admin/keys/{ops['id']}/revoke", token=root["token"]
    )
    assert status == HTTPStatus.OK
    resp = await signed_in.client.get("/admin/ui/keys", allow_redirects=False)
    assert resp.status == HTTPStatus.SEE_OTHER
    assert resp.headers["Location"].startswith("/admin/ui/login")


async def test_an_admin_jwt_signs_in_until_its_expiry(
    browser: ConsoleClient, console_stack: Stack
) -> None:
    """An admin JWT's session is named jwt:<actor> and ends at the JWT's exp."""
    status, minted = await console_stack.api(
        "POST", "/admin/keys/ops/tokens", {"ttl": "30m"}
    )
    assert status == HTTPStatus.CREATED
    page = await browser.sign_in(minted["token"])
    assert page.status == HTTPStatus.OK
    console_stack.clock.advance(minutes=14)
    assert (await browser.get("/admin/ui/keys")).status == HTTPStatus.OK
    console_stack.clock.advance(minutes=14)
    assert (await browser.get("/admin/ui/keys")).status == HTTPStatus.OK
    console_stack.clock.advance(minutes=3)
    resp = await browser.client.get("/admin/ui/keys", allow_redirects=False)
    assert resp.status == HTTPStatus.SEE_OTHER
