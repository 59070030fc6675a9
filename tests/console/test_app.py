"""console.app: mounted on the admin listener only, every response with its headers."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pytest_aiohttp import AiohttpClient

from authproxy.console.app import create_admin_listener_app
from authproxy.console.headers import CSP
from tests.support.admin import Stack
from tests.support.console import ConsoleClient

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def assert_secured(headers: Any) -> None:
    """The contract's headers are all there."""
    for name, value in HEADERS.items():
        assert headers.get(name) == value, name


async def test_the_root_leads_to_the_keys_page(signed_in: ConsoleClient) -> None:
    """GET /admin/ui/ signed in: 303 to /admin/ui/keys."""
    resp = await signed_in.client.get("/admin/ui/", allow_redirects=False)
    assert resp.status == HTTPStatus.SEE_OTHER
    assert resp.headers["Location"] == "/admin/ui/keys"


async def test_the_admin_listeners_root_leads_to_the_console(
    browser: ConsoleClient, console_stack: Stack
) -> None:
    """GET / without a credential: 303 to /admin/ui/, never a 401 the limiter counts."""
    for _ in range(30):  # more than limits.auth_failures would allow as failures
        resp = await browser.client.get("/", allow_redirects=False)
        assert resp.status == HTTPStatus.SEE_OTHER
        assert resp.headers["Location"] == "/admin/ui/"
    page = await browser.get("/")
    assert page.doc.find(id="login-form") is not None
    # Not blocked: none of those visits counted as a failed authentication.
    assert (await browser.sign_in(console_stack.admin_token)).status == HTTPStatus.OK


async def test_the_prefix_without_its_slash_leads_into_the_console(
    signed_in: ConsoleClient,
) -> None:
    """/admin/ui: 303 to /admin/ui/, where the session cookie is sent."""
    resp = await signed_in.client.get("/admin/ui", allow_redirects=False)
    assert resp.status == HTTPStatus.SEE_OTHER
    assert resp.headers["Location"] == "/admin/ui/"
    page = await signed_in.get("/admin/ui")
    assert page.url == "/admin/ui/keys"


async def test_every_kind_of_response_carries_the_security_headers(
    signed_in: ConsoleClient, browser: ConsoleClient
) -> None:
    """Pages, redirects, static files, 404 and 405 pages: CSP and friends."""
    for path in ("/admin/ui/keys", "/admin/ui/login", "/admin/ui/nope"):
        resp = await signed_in.client.get(path, allow_redirects=False)
        assert_secured(resp.headers)
        assert resp.headers["Cache-Control"] == "no-store"
    redirect = await signed_in.client.get("/admin/ui/", allow_redirects=False)
    assert_secured(redirect.headers)
    static = await signed_in.client.get("/admin/ui/static/console.css")
    assert static.status == HTTPStatus.OK
    assert static.content_type == "text/css"
    assert_secured(static.headers)
    assert "max-age=31536000" in static.headers["Cache-Control"]
    script = await signed_in.client.get("/admin/ui/static/console.js")
    assert script.status == HTTPStatus.OK
    assert "javascript" in script.content_type


async def test_errors_are_html_pages_with_their_status(
    signed_in: ConsoleClient,
) -> None:
    """An unknown console path is a 404 page; a wrong method a 405 with Allow."""
    page = await signed_in.get("/admin/ui/nope")
    assert page.status == HTTPStatus.NOT_FOUND
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.doc.by_id("error").find("h1").text == "404 Not Found"  # type: ignore[union-attr]
    resp = await signed_in.client.put(
        "/admin/ui/logout", headers=signed_in.same_origin()
    )
    assert resp.status == HTTPStatus.METHOD_NOT_ALLOWED
    assert resp.headers["Allow"] == "POST"
    assert '<main id="error">' in await resp.text()


async def test_pages_load_nothing_inline_or_from_elsewhere(
    signed_in: ConsoleClient,
) -> None:
    """No inline script or style, no style attribute, only same-origin assets."""
    for path in ("/admin/ui/keys", "/admin/ui/login", "/admin/ui/nope"):
        page = await signed_in.get(path)
        for el in page.doc.iter():
            assert "style" not in el.attrs, (path, el.tag)
            assert el.tag != "style", path
            if el.tag == "script":
                assert el.attrs["src"].startswith("/admin/ui/static/"), path
                assert not el.text
            for attr in ("src", "href", "action"):
                value = el.attrs.get(attr, "/")
                assert value.startswith("/"), (path, attr, value)
                assert not value.startswith("//"), (path, attr, value)
            assert not any(a.startswith("on") for a in el.attrs), (path, el.tag)


async def test_the_layout_has_the_navigation_and_a_viewport(
    signed_in: ConsoleClient,
) -> None:
    """Keys / Usage / Live links, the sign-out form, a viewport meta tag."""
    page = await signed_in.get("/admin/ui/keys")
    nav = page.doc.find("nav")
    assert nav is not None
    assert [a.attrs["href"] for a in nav.find_all("a")] == [
        "/admin/ui/keys",
        "/admin/ui/usage",
        "/admin/ui/live",
    ]
    assert nav.find("form", id="logout-form") is not None
    meta = page.doc.find("meta", name="viewport")
    assert meta is not None
    assert "width=device-width" in meta.attrs["content"]


async def test_the_admin_api_keeps_its_json_only_rule(console_stack: Stack) -> None:
    """Mounting the console does not open the API to form posts."""
    resp = await console_stack.admin.post(
        "/admin/keys",
        data={"name": "x"},
        headers={"Authorization": f"Bearer {console_stack.admin_token}"},
    )
    assert resp.status == HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    status, _ = await console_stack.api("GET", "/admin/keys")
    assert status == HTTPStatus.OK


async def test_the_console_is_not_on_the_proxy_port(console_stack: Stack) -> None:
    """The proxy listener forwards /admin/ui/ like any path: no console there."""
    resp = await console_stack.proxy.get("/admin/ui/login")
    assert resp.status != HTTPStatus.OK or "login-form" not in await resp.text()


async def test_a_disabled_console_is_not_mounted(
    start_proxy: Any, aiohttp_client: AiohttpClient
) -> None:
    """admin.console.enabled: false: /admin/ui/ is the admin API's (JSON 401)."""
    proxy = await start_proxy({"admin.console.enabled": False})
    admin = await aiohttp_client(create_admin_listener_app(proxy.app))
    resp = await admin.get("/admin/ui/login")
    assert resp.status == HTTPStatus.UNAUTHORIZED
    assert resp.content_type == "application/json"


async def test_every_field_on_every_page_has_a_label(
    signed_in: ConsoleClient, console_stack: Stack
) -> None:
    """Accessible forms: each visible input names its label (for=id or wrapped)."""
    status, alice = await console_stack.api("GET", "/admin/keys/alice")
    assert status == HTTPStatus.OK
    paths = [
        "/admin/ui/keys",
        "/admin/ui/keys/new",
        f"/admin/ui/keys/{alice['id']}",
    ]
    pages = [await signed_in.get(p) for p in paths]
    pages.append(await signed_in.create_key(name="labelled"))
    console_stack.secrets.add(pages[-1].secret or "")
    checked = 0
    for page in pages:
        assert page.status in {HTTPStatus.OK, HTTPStatus.CREATED}, page.url
        labels = page.doc.find_all("label")
        targets = {label.attrs.get("for") for label in labels}
        wrapped = {id(el) for label in labels for el in label.iter()}
        for el in page.doc.iter():
            if el.tag not in {"input", "select", "textarea"}:
                continue
            if el.attrs.get("type") in {"hidden", "submit"}:
                continue
            checked += 1
            assert el.attrs.get("id") in targets or id(el) in wrapped, (
                page.url,
                el.attrs,
            )
    assert checked > 20
