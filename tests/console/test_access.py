"""console.access: each request's session checked (expiry, its key), CSRF on posts."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus
from pathlib import Path

import pytest

from authproxy.auth.minting import mint_admin_token
from authproxy.console.access import safe_next
from authproxy.web.appkeys import KEY_BACKEND_KEY, WATCHER_KEY
from tests.support.admin import Stack
from tests.support.console import ConsoleClient, admin_trail


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


async def test_an_admin_jwt_session_is_named_by_its_actor(
    browser: ConsoleClient, console_stack: Stack, audit_path: Path
) -> None:
    """authproxy admin-token's JWT: actor jwt:<actor>, no key, ends at exp."""
    main = console_stack.proxy.app
    keys = main[KEY_BACKEND_KEY].load_signing()
    await main[WATCHER_KEY].reload_signing(force=True)
    minted = mint_admin_token(
        keys,
        actor="oncall",
        ttl=timedelta(minutes=20),
        max_ttl=timedelta(hours=1),
        now=console_stack.clock(),
    )
    console_stack.secrets.add(minted["token"])
    page = await browser.sign_in(minted["token"])
    assert page.status == HTTPStatus.OK, page.text
    assert page.doc.by_id("logout-form").find(class_="actor").text == "jwt:oncall"  # type: ignore[union-attr]
    login = admin_trail(audit_path)[-1]
    assert (login["action"], login["actor"], login["key_id"]) == (
        "console_login",
        "jwt:oncall",
        None,
    )
    console_stack.clock.advance(minutes=14)
    assert (await browser.get("/admin/ui/keys")).status == HTTPStatus.OK
    console_stack.clock.advance(minutes=7)
    resp = await browser.client.get("/admin/ui/keys", allow_redirects=False)
    assert resp.status == HTTPStatus.SEE_OTHER
