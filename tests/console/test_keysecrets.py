"""console.keysecrets: create, rotate, passwd, mint: a secret shown once, that works."""

from __future__ import annotations

import base64
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from authproxy.console.app import create_admin_listener_app
from tests.support.admin import Stack
from tests.support.console import ConsoleClient, Page, admin_trail
from tests.support.harness import MakeKey
from tests.support.logs import Secrets
from tests.support.ollama import OllamaIdentity


def new_token(page: Page, stack: Stack) -> str:
    """The secret the page shows once; remembered as a secret for the log checks."""
    value = page.secret
    assert value, page.text
    stack.secrets.add(value)
    return value


async def key_of(stack: Stack, name: str) -> dict[str, Any]:
    """The key as the admin API describes it."""
    status, data = await stack.api("GET", f"/admin/keys/{name}")
    assert status == HTTPStatus.OK
    return data  # type: ignore[no-any-return]


async def test_create_shows_the_token_once_and_it_works(
    signed_in: ConsoleClient, console_stack: Stack, audit_path: Path
) -> None:
    """201, the token in #new-token with a copy button and a curl line; no-store."""
    page = await signed_in.create_key(
        name="build",
        scopes=["inference", "models:read"],
        models="llama3*, qwen*",
        rpm="60",
        tokens_per_day="100000",
        note="CI runners",
    )
    assert page.status == HTTPStatus.CREATED, page.text
    assert page.headers["Cache-Control"] == "no-store"
    token = new_token(page, console_stack)
    assert page.doc.by_id("new-token").attrs.get("readonly") is not None
    assert page.doc.by_id("copy-token").attrs["data-copy"] == "new-token"
    curl = page.doc.by_id("curl-line").text
    assert curl.startswith("curl http://127.0.0.1:")
    assert f"Authorization: Bearer {token}" in curl
    assert await console_stack.call(token) == HTTPStatus.OK
    key = await key_of(console_stack, "build")
    assert key["scopes"] == ["inference", "models:read"]
    assert key["models"] == ["llama3*", "qwen*"]
    assert key["limits"] == {"requests_per_minute": 60, "tokens_per_day": 100000}
    assert key["note"] == "CI runners"
    again = await signed_in.get(f"/admin/ui/keys/{key['id']}")
    assert token not in again.text
    [entry] = [r for r in admin_trail(audit_path) if r["action"] == "create"]
    assert entry["source"] == "console"
    assert entry["actor"] == "ops"
    assert entry["detail"] == {"scopes": ["inference", "models:read"]}


async def test_a_password_key_and_an_ollama_key(
    signed_in: ConsoleClient, console_stack: Stack
) -> None:
    """The other kinds: no token on the page; the password works as Basic."""
    page = await signed_in.create_key(
        name="carol", kind="password", password="correct horse battery"
    )
    assert page.status == HTTPStatus.CREATED, page.text
    assert page.doc.find(id="new-token") is None
    basic = base64.b64encode(b"carol:correct horse battery").decode()
    resp = await console_stack.proxy.get(
        "/api/tags", headers={"Authorization": f"Basic {basic}"}
    )
    assert resp.status == HTTPStatus.OK
    identity = OllamaIdentity()
    page = await signed_in.create_key(
        name="dev", kind="ollama", public_key=identity.pub_line
    )
    assert page.status == HTTPStatus.CREATED, page.text
    assert (await key_of(console_stack, "dev"))["kind"] == "ollama"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "rpm": "fast"}, "rpm: expected a whole number"),
        ({"name": "x", "scopes": ["everything"]}, "everything"),
        ({"name": "x", "kind": "password", "password": "short"}, "password"),
        ({"name": "x", "kind": "password"}, "password: required"),
        ({"name": "x", "kind": "ollama", "public_key": "ssh-rsa AAAA"}, "public"),
        ({"name": "x", "kind": "magic"}, "kind"),
        ({"name": "x", "expires": "yesterday"}, "expires_at"),
        ({"name": "ops"}, "ops"),
    ],
)
async def test_bad_input_is_a_400_page_naming_the_field(
    signed_in: ConsoleClient, console_stack: Stack, fields: dict[str, Any], message: str
) -> None:
    """Validated by the API's parsers and the store: the form again, saying why."""
    page = await signed_in.create_key(**fields)
    assert page.status == HTTPStatus.BAD_REQUEST, page.text
    assert message in page.doc.by_id("create-error").text
    form = page.doc.by_id("create-form")
    assert form.value_of("name") == fields["name"]
    assert form.value_of("password") in {None, ""}  # never echoed
    status, listed = await console_stack.api("GET", "/admin/keys")
    assert status == HTTPStatus.OK
    assert sorted(k["name"] for k in listed["keys"]) == ["alice", "ops"]


async def test_the_form_shown_again_keeps_what_was_typed(
    signed_in: ConsoleClient,
) -> None:
    """Kind, scopes, models, limits, note: as sent; the password field empty."""
    page = await signed_in.create_key(
        name="x",
        kind="password",
        password="short",
        scopes=["embeddings"],
        models="m1, m2",
        rpm="7",
        note="<b>n</b>",
    )
    assert page.status == HTTPStatus.BAD_REQUEST
    form = page.doc.by_id("create-form")
    selected = [o for o in form.find_all("option") if "selected" in o.attrs]
    assert [o.attrs["value"] for o in selected] == ["password"]
    ticked = [
        el.attrs["value"]
        for el in form.find_all("input", name="scopes")
        if "checked" in el.attrs
    ]
    assert ticked == ["embeddings"]
    assert form.value_of("models") == "m1, m2"
    assert form.value_of("rpm") == "7"
    assert form.value_of("password") == ""
    assert form.find("textarea", name="note").text == "<b>n</b>"  # type: ignore[union-attr]
    assert "<b>n</b>" not in page.text


async def test_rotate_with_grace_keeps_the_old_token_for_a_while(
    signed_in: ConsoleClient, console_stack: Stack, token: str, audit_path: Path
) -> None:
    """A new token at once; the old one until the grace runs out."""
    alice = await key_of(console_stack, "alice")
    page = await signed_in.submit(
        f"/admin/ui/keys/{alice['id']}/rotate", {"grace": "1h", "confirm": "yes"}
    )
    assert page.status == HTTPStatus.OK, page.text
    fresh = new_token(page, console_stack)
    assert fresh != token
    assert await console_stack.call(fresh) == HTTPStatus.OK
    assert await console_stack.call(token) == HTTPStatus.OK
    console_stack.clock.advance(hours=1, seconds=1)
    assert await console_stack.call(token) == HTTPStatus.UNAUTHORIZED
    [entry] = [r for r in admin_trail(audit_path) if r["action"] == "rotate"]
    assert entry["detail"] == {"grace_seconds": 3600.0}


async def test_passwd_changes_a_password_key(
    signed_in: ConsoleClient, console_stack: Stack
) -> None:
    """The password form appears on a password key's page; the new one works."""
    await signed_in.create_key(
        name="carol", kind="password", password="first password 1"
    )
    carol = await key_of(console_stack, "carol")
    page = await signed_in.get(f"/admin/ui/keys/{carol['id']}")
    assert page.doc.find(id="passwd-form") is not None
    assert page.doc.find(id="rotate-form") is None
    done = await signed_in.submit(
        f"/admin/ui/keys/{carol['id']}/passwd",
        {"password": "second password 2", "grace": "0s", "confirm": "yes"},
    )
    assert done.status == HTTPStatus.OK, done.text
    for password, status in (
        ("second password 2", HTTPStatus.OK),
        ("first password 1", HTTPStatus.UNAUTHORIZED),
    ):
        basic = base64.b64encode(f"carol:{password}".encode()).decode()
        resp = await console_stack.proxy.get(
            "/api/tags", headers={"Authorization": f"Basic {basic}"}
        )
        assert resp.status == status


async def test_a_minted_jwt_is_shown_once_and_works(
    signed_in: ConsoleClient, console_stack: Stack, audit_path: Path
) -> None:
    """The token form: a JWT with the chosen scopes and lifetime."""
    alice = await key_of(console_stack, "alice")
    page = await signed_in.submit(
        f"/admin/ui/keys/{alice['id']}/token",
        [("ttl", "10m"), ("scopes", "models:read")],
    )
    assert page.status == HTTPStatus.CREATED, page.text
    jwt = new_token(page, console_stack)
    assert jwt.count(".") == 2
    assert await console_stack.call(jwt) == HTTPStatus.OK
    resp = await console_stack.proxy.post(
        "/api/chat", json={}, headers={"Authorization": f"Bearer {jwt}"}
    )
    assert resp.status == HTTPStatus.FORBIDDEN  # no inference scope in this JWT
    [entry] = [r for r in admin_trail(audit_path) if r["action"] == "token"]
    assert entry["detail"] == {"ttl": "10m", "scopes": ["models:read"]}


@pytest.mark.parametrize(
    ("ttl", "message"), [("48h", "ttl: must be"), ("soon", "ttl"), ("0s", "ttl")]
)
async def test_a_jwt_beyond_the_limits_is_refused(
    signed_in: ConsoleClient, console_stack: Stack, ttl: str, message: str
) -> None:
    """jwt.max_ttl (24h) and the duration syntax, checked as by the API: 400 pages."""
    alice = await key_of(console_stack, "alice")
    page = await signed_in.submit(f"/admin/ui/keys/{alice['id']}/token", {"ttl": ttl})
    assert page.status == HTTPStatus.BAD_REQUEST
    assert message in page.doc.by_id("error").text
    assert page.secret is None


async def test_the_curl_line_names_the_host_the_browser_used(
    start_proxy: Any,
    aiohttp_client: AiohttpClient,
    make_key: MakeKey,
    secrets_seen: Secrets,
) -> None:
    """A proxy listening on every address: the curl line uses this page's host."""
    ops = make_key("ops", scopes=["admin"])
    assert ops.token is not None
    proxy = await start_proxy({"listen.host": "0.0.0.0", "listen.port": 8080})
    admin = await aiohttp_client(create_admin_listener_app(proxy.app))
    browser = ConsoleClient(admin)
    assert (await browser.sign_in(ops.token)).status == HTTPStatus.OK
    page = await browser.create_key(name="wide")
    token = page.secret
    assert token is not None
    secrets_seen.add(token)
    assert page.doc.by_id("curl-line").text.startswith(
        "curl http://127.0.0.1:8080/api/tags"
    )
