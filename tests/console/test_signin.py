"""console.signin: sign-in with an admin key or JWT, sessions re-checked, sign-out."""

from __future__ import annotations

import ssl
from http import HTTPStatus
from pathlib import Path

import aiohttp
import pytest
import trustme
from pytest_aiohttp import AiohttpServer

from authproxy.console.app import create_admin_listener_app
from authproxy.console.csrf import LOGIN_COOKIE
from authproxy.console.session import COOKIE
from tests.support.admin import Stack
from tests.support.auth import UNKNOWN_TOKEN
from tests.support.console import ConsoleClient, admin_trail, parse_html


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
    records = [r for r in admin_trail(audit_path) if r["action"] == "console_login"]
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
    assert any(r["action"] == "console_logout" for r in admin_trail(audit_path))


async def test_each_sign_in_gets_a_new_session_id(
    browser: ConsoleClient, console_stack: Stack
) -> None:
    """Signing in again after signing out never reuses the session id."""
    assert (await browser.sign_in(console_stack.admin_token)).status == HTTPStatus.OK
    first = browser.cookie(COOKIE)
    await browser.sign_out()
    assert (await browser.sign_in(console_stack.admin_token)).status == HTTPStatus.OK
    second = browser.cookie(COOKIE)
    assert second not in {None, first}


async def test_the_cookie_is_secure_under_tls(
    aiohttp_server: AiohttpServer,
    console_stack: Stack,
    leaf: trustme.LeafCert,
    ca: trustme.CA,
) -> None:
    """An admin listener behind TLS sets Secure on both console cookies."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    app = create_admin_listener_app(console_stack.proxy.app)
    server = await aiohttp_server(app, ssl=server_ctx)
    # unsafe: the jar keeps cookies of an IP address (127.0.0.1).
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as session:
        base = f"https://127.0.0.1:{server.port}"
        form = await session.get(f"{base}/admin/ui/login", ssl=client_ctx)
        assert form.cookies[LOGIN_COOKIE]["secure"]
        doc = parse_html(await form.text())
        resp = await session.post(
            f"{base}/admin/ui/login",
            data={
                "csrf_token": doc.value_of("csrf_token") or "",
                "token": console_stack.admin_token,
            },
            headers={"Origin": base, "Sec-Fetch-Site": "same-origin"},
            ssl=client_ctx,
            allow_redirects=False,
        )
        assert resp.status == HTTPStatus.SEE_OTHER
        assert resp.cookies[COOKIE]["secure"]
